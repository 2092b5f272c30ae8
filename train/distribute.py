"""tf.distribute strategies for scale-out training: one machine's devices, or several workers.

`mirrored` replicates the model on every GPU, or on every logical CPU device when there
is no GPU. `multiworker` is MultiWorkerMirroredStrategy configured from TF_CONFIG, as
TensorFlow documents (https://www.tensorflow.org/guide/distributed_training).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import tensorflow as tf

from fmnist.errors import UserError


def split_cpu(num_devices: int) -> None:
    """Expose the CPU as `num_devices` logical devices (must run before TF initialises devices)."""
    if num_devices < 1:
        raise UserError(f"--cpu-devices must be >= 1, got {num_devices}")
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_devices
        )
    except RuntimeError as err:
        raise UserError(f"cannot split the CPU into {num_devices} devices: {err}") from None


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":
        raw = os.environ.get("TF_CONFIG")
        if not raw:
            raise UserError("--strategy multiworker needs TF_CONFIG (cluster and task) to be set")
        try:
            tf_config = json.loads(raw)
            task = tf_config["task"]
            if task["type"] not in tf_config["cluster"] or not isinstance(task["index"], int):
                raise KeyError(task["type"])
            tf_config["cluster"][task["type"]][task["index"]]
        except (ValueError, KeyError, TypeError, IndexError):
            raise UserError(
                "TF_CONFIG must be JSON with cluster.worker and a task (type, index) in that "
                "cluster, e.g. "
                '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
                '"task": {"type": "worker", "index": 0}}'
            ) from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise UserError(f"unknown strategy {name!r}; choose mirrored or multiworker")


def is_chief(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether this process should write the run directory (worker 0 of a multi-worker job)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )


def worker_dir(run_dir: Path, strategy: tf.distribute.Strategy | None) -> Path:
    """Where this process writes: the run directory for the chief, else its own
    `RUN/workers/<type>-<index>/`, so that workers sharing a file system never overwrite the
    chief's files (as TensorFlow's multi-worker guide advises)."""
    if is_chief(strategy):
        return run_dir
    resolver = strategy.cluster_resolver
    return run_dir / "workers" / f"{resolver.task_type}-{resolver.task_id}"


def is_multi_worker(strategy: tf.distribute.Strategy | None) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def worker_shard(strategy: tf.distribute.Strategy | None) -> tuple[int, int] | None:
    """(workers, this worker's index) for a multi-worker job, else None: each worker reads
    and decodes only its own share of the training images."""
    if not is_multi_worker(strategy):
        return None
    resolver = strategy.cluster_resolver
    cluster = resolver.cluster_spec().as_dict()
    tasks = [(kind, i) for kind in ("chief", "worker") for i in range(len(cluster.get(kind, [])))]
    return len(tasks), tasks.index((resolver.task_type, resolver.task_id))


def prepare_multi_worker_fit(model, strategy: tf.distribute.Strategy, dataset) -> None:
    """Let Keras 3 `fit` run under MultiWorkerMirroredStrategy.

    Keras 3 fails there in two places (tensorflow/tensorflow#72388): it reduces the
    per-replica step logs with `axis=0`, which scalars do not have, and it reduces a
    distributed input batch to build the model symbolically. The logs are already
    synchronised across workers, so the first local value is the right one; and building
    the model on one local batch before `fit` makes the second reduction unnecessary.
    """
    from keras.src.backend.tensorflow import trainer

    if not getattr(trainer.reduce_per_replica, "_fmnist_multi_worker", False):
        original = trainer.reduce_per_replica

        def reduce_per_replica(values, strategy, reduction):
            if reduction in ("auto", "mean") and is_multi_worker(strategy):
                reduction = "first"
            return original(values, strategy, reduction)

        reduce_per_replica._fmnist_multi_worker = True
        trainer.reduce_per_replica = reduce_per_replica
    with strategy.scope():
        model._symbolic_build(data_batch=next(iter(dataset)))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
