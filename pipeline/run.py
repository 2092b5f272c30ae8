"""The main job: train, evaluate, export, serve, check parity three ways, measure, report.

Every stage is called through its library and talks to the next through files on disk
(the run directory, the exported bundle and its manifest), exactly as a user chaining
the `fmnist` commands would. The model server runs as a real child process on free
loopback ports and is always stopped, even when a stage fails.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import confusion_matrix

from fmnist.errors import UserError
from fmnist.parity import ParityResult, format_result
from fmnist.pipeline.config import PipelineConfig
from fmnist.pipeline.report import write_report

if TYPE_CHECKING:  # TensorFlow is imported only when the pipeline runs
    from fmnist.train.config import TrainConfig
    from fmnist.train.data import FashionMNIST
    from fmnist.train.train import TrainResult

OUTPUTS = ("run", "models", "figures", "logs", "report.json", "report.md", "report.html")


@dataclass
class PipelineResult:
    out_dir: Path
    report: dict[str, Any]
    paths: dict[str, Path]

    @property
    def passed(self) -> bool:
        return bool(self.report["passed"])


class _Stages:
    """Times named stages and reports progress."""

    def __init__(self, progress: Callable[[str], None]) -> None:
        self.seconds: dict[str, float] = {}
        self.progress = progress

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.progress(f"== {name}")
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 2)
        self.progress(f"   {name} took {self.seconds[name]:.1f} s")


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse to mix two pipeline runs in one directory unless asked to replace the old one."""
    existing = [name for name in OUTPUTS if (out_dir / name).exists()]
    if existing and not overwrite:
        raise UserError(
            f"{out_dir} already holds pipeline outputs ({', '.join(existing)}); "
            "use --overwrite to replace them or choose another --out"
        )
    for name in existing:
        path = out_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def run_pipeline(
    config: PipelineConfig, progress: Callable[[str], None] = lambda _: None
) -> PipelineResult:
    """Run every stage in order and write DIR/report.{json,md,html}."""
    from fmnist.edge.classifier import Classifier
    from fmnist.edge.parity import run_parity
    from fmnist.edge.runtime import select_runtime
    from fmnist.export.config import ExportConfig
    from fmnist.export.export import ParityRefused, export_run
    from fmnist.manifest import load_manifest
    from fmnist.pipeline import figures
    from fmnist.serving.client import GrpcClient, RestClient
    from fmnist.serving.process import start_server
    from fmnist.serving.served_parity import run_served_parity
    from fmnist.train import data as train_data
    from fmnist.train.config import load_config
    from fmnist.train.evaluate import evaluate_run
    from fmnist.train.train import train

    started = time.perf_counter()
    out = config.out_dir
    stages = _Stages(progress)
    train_config = load_config(config.train_config, quick=config.quick)

    with stages("train"):
        data = train_data.load(
            config.data_dir,
            val_fraction=train_config.val_fraction,
            seed=train_config.seed,
            download=config.download,
        )
        result = train(train_config, data, config.run_dir, verbose=2 if config.verbose else 0)
        progress(
            f"   {result.epochs_run} epochs, {result.images_per_s:.0f} img/s, "
            f"best epoch {result.best_epoch}"
        )
    with stages("evaluate"):
        float_metrics = evaluate_run(config.run_dir, data.data_dir)
        progress(f"   float test accuracy {float_metrics['accuracy']:.4f}")
    figures_dir = config.figures_dir
    figures_dir.mkdir(parents=True, exist_ok=True)
    for name in ("training_curves.png", "misclassified.png"):
        shutil.copyfile(config.run_dir / name, figures_dir / name)
    head = _report_head(config, train_config, data, result, float_metrics)
    with stages("export"):
        try:
            export = export_run(
                config.run_dir,
                ExportConfig(
                    base_path=config.base_path,
                    name=config.model_name,
                    data_dir=data.data_dir,
                    tolerance=config.tolerance,
                ),
            )
        except ParityRefused as refused:  # report what was measured, then stop with exit 1
            paths = write_report(
                out,
                head
                | {
                    "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "passed": False,
                    "failure": "export refused to publish: a TFLite model is outside tolerance",
                    "total_seconds": round(time.perf_counter() - started, 1),
                    "stages": stages.seconds,
                    "parity": [p.to_dict() for p in refused.parity.values()],
                },
            )
            raise ParityRefused(f"{refused}; report: {paths['html']}") from None
        bundle = export.bundle_dir
        manifest = load_manifest(bundle)
        progress(f"   published {bundle}")

    parity: list[ParityResult] = []
    latency: list[dict[str, Any]] = []
    test = data.test
    runtime = select_runtime()
    with stages("start server"):
        server = start_server(
            *("--model_name", config.model_name),
            *("--model_base_path", str(config.base_path / config.model_name)),
            log_dir=out / "logs",
        )
    try:
        clients = [
            GrpcClient(server.grpc_target, config.model_name),
            RestClient(server.rest_url, config.model_name),
        ]
        with stages("served parity (gRPC, REST)"):
            for client in clients:
                client.wait_until_available(60)
                parity.append(
                    run_served_parity(client, bundle, data.data_dir, tolerance=config.tolerance)
                )
                progress(format_result(parity[-1]))
        with stages("latency"):
            latency = _latency(config, bundle, clients, runtime, test.images)
        for client in clients:
            client.close()
    finally:
        code = server.stop()
    if code != 0:
        raise UserError(f"fmnist serve exited with {code} (log {server.log_path})")
    with stages("edge parity"):
        parity.append(run_parity(bundle, data.data_dir, config.tolerance, runtime=runtime))
        progress(format_result(parity[-1]))

    with stages("report"):
        int8_probs = Classifier(manifest.tflite("int8").path, runtime=runtime).predict_proba(
            test.images, batch_size=1000
        )
        labels = list(range(len(data.class_names)))
        reference = manifest.load_reference()
        float_matrix = confusion_matrix(test.labels, reference.argmax(1), labels=labels)
        int8_matrix = confusion_matrix(test.labels, int8_probs.argmax(1), labels=labels)
        int8_metrics = manifest.data["tflite"]["int8"]["metrics"]
        figures.confusion_side_by_side(
            float_matrix, int8_matrix, data.class_names, figures_dir / "confusion.png"
        )
        figures.per_class_f1(
            [c["f1"] for c in float_metrics["per_class"]],
            [c["f1"] for c in int8_metrics["per_class"]],
            data.class_names,
            figures_dir / "per_class_f1.png",
        )
    report = head | {
        "title": f"fmnist-deploy pipeline report: {config.model_name} v{export.version}",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "passed": all(p.passed for p in parity),
        "total_seconds": round(time.perf_counter() - started, 1),
        "stages": stages.seconds,
        "machine": {"python": sys.version.split()[0], "tflite_runtime": str(runtime)},
        "int8_metrics": int8_metrics,
        "export": {
            "bundle": str(bundle),
            "version": export.version,
            "models_config": str(export.models_config),
            "seconds": export.timings,
        },
        "parity": [p.to_dict() for p in parity],
        "artifacts": [{"name": name, **entry} for name, entry in manifest.data["files"].items()],
        "latency": latency,
        "figures": {
            "training_curves": "figures/training_curves.png",
            "confusion": "figures/confusion.png",
            "per_class_f1": "figures/per_class_f1.png",
            "misclassified": "figures/misclassified.png",
        },
    }
    paths = write_report(out, report)
    return PipelineResult(out_dir=out, report=report, paths=paths)


def _report_head(
    config: PipelineConfig,
    train_config: TrainConfig,
    data: FashionMNIST,
    result: TrainResult,
    float_metrics: dict[str, Any],
) -> dict[str, Any]:
    """What every report holds, even one of a pipeline that stopped at the export gate."""
    return {
        "schema": "fmnist-deploy/pipeline-report",
        "schema_version": 1,
        "title": f"fmnist-deploy pipeline report: {config.model_name}",
        "quick": config.quick,
        "machine": {"python": sys.version.split()[0]},
        "data": {
            "data_dir": str(data.data_dir),
            "train": len(data.train),
            "validation": len(data.validation),
            "test": len(data.test),
            "val_fraction": train_config.val_fraction,
            "seed": train_config.seed,
        },
        "train_config": train_config.to_dict(),
        "training": {
            "parameters": int(result.model.count_params()),
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "best_val_accuracy": float(result.history["val_accuracy"][result.best_epoch - 1]),
            "wall_time_s": result.wall_time_s,
            "images_per_s": result.images_per_s,
        },
        "float_metrics": float_metrics,
        "figures": {
            "training_curves": "figures/training_curves.png",
            "misclassified": "figures/misclassified.png",
        },
    }


def _latency(
    config: PipelineConfig, bundle: Path, clients: list, runtime: Any, images: np.ndarray
) -> list[dict[str, Any]]:
    """Batch-1 and batch-64 latency of every serving path, side by side in this process."""
    import tensorflow as tf

    from fmnist.edge.classifier import Classifier
    from fmnist.manifest import load_manifest
    from fmnist.pipeline.latency import measure

    manifest = load_manifest(bundle)
    version = manifest.model_version  # pinned: REST then needs no version lookup
    serve = tf.saved_model.load(str(bundle)).signatures["serving_default"]
    tflite = {
        kind: Classifier(manifest.tflite(kind).path, runtime=runtime)
        for kind in ("float32", "int8")
    }
    grpc_client, rest_client = clients
    rows = []
    for batch in (1, 64):
        x = images[:batch]
        runs = config.latency_runs if batch == 1 else max(10, config.latency_runs // 4)
        paths: list[tuple[str, Callable[[], Any]]] = [
            ("SavedModel in-process", lambda x=x: serve(images=tf.constant(x))),
            ("SavedModel over gRPC", lambda x=x: grpc_client.predict(x, version=version)),
            ("SavedModel over REST", lambda x=x: rest_client.predict(x, version=version)),
            (f"TFLite float32 ({runtime})", lambda x=x: tflite["float32"].predict_proba(x)),
            (f"TFLite int8 ({runtime})", lambda x=x: tflite["int8"].predict_proba(x)),
        ]
        rows += [measure(name, call, batch=batch, runs=runs) for name, call in paths]
    return rows
