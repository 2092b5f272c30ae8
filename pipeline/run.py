"""The main job: train, evaluate, export, serve, check parity three ways, measure, report.

Every stage is called through its library and talks to the next through files on disk
(the run directory, the exported bundle and its manifest), exactly as a user chaining
the `fmnist` commands would. Each stage is one function below; what it computed is passed
on, never recomputed (the edge parity check's int8 outputs also draw the report's figures).
The model server runs as a real child process on free loopback ports and is always stopped,
even when a stage fails. TensorFlow, gRPC and plotting load inside the stages that use them.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmnist.data import Dataset
from fmnist.edge.parity import ParityRun, measure_parity
from fmnist.edge.runtime import Runtime, select_runtime
from fmnist.errors import UserError
from fmnist.manifest import Manifest
from fmnist.metrics import compute_metrics, text_report
from fmnist.parity import ParityResult, format_result
from fmnist.pipeline.config import PipelineConfig, model_name_for
from fmnist.pipeline.previous import compare_with_previous
from fmnist.pipeline.report import write_report
from fmnist.run_dir import RunDir

if TYPE_CHECKING:  # TensorFlow is imported only when the pipeline runs
    from fmnist.export.export import ExportResult
    from fmnist.train.config import TrainConfig
    from fmnist.train.train import TrainResult

OUTPUTS = ("run", "models", "figures", "logs", "report.json", "report.md", "report.html")
FIGURES = {
    "training_curves": "figures/training_curves.png",
    "confusion": "figures/confusion.png",
    "per_class_f1": "figures/per_class_f1.png",
    "misclassified": "figures/misclassified.png",
}


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
        self.started = time.perf_counter()

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.progress(f"== {name}")
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 2)
        self.progress(f"   {name} took {self.seconds[name]:.1f} s")

    def summary(self) -> dict[str, Any]:
        """The report fields that say when it was made and where the time went."""
        return {
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "total_seconds": round(time.perf_counter() - self.started, 1),
            "stages": self.seconds,
        }


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
    from fmnist.train.config import load_config

    stages = _Stages(progress)
    train_config = load_config(config.train_config, quick=config.quick)
    data, trained = _train(config, train_config, stages)
    config = replace(config, model_name=config.model_name or model_name_for(data))
    float_metrics = _evaluate(config, data, stages)
    head = _report_head(config, train_config, data, trained, float_metrics)
    export = _export(config, data, head, stages)
    manifest = export.manifest
    runtime = select_runtime()
    served, latency = _serve(config, manifest, data, runtime, stages)
    edge = _edge_parity(config, manifest.bundle_dir, data, runtime, stages)
    int8_metrics = manifest.tflite("int8").metrics
    flipped = {}
    if manifest.flip_average:  # every parity check compared with the averaged float model
        flipped = {
            "float_metrics": _reference_metrics(edge, data.class_names),
            "model_alone_metrics": float_metrics,
        }
        float_metrics = flipped["float_metrics"]
    with stages("report"):
        _draw_float_vs_int8(config, edge, float_metrics, int8_metrics, data.class_names)
    parity = [*served, edge.result]
    summary = stages.summary()
    report = head | {
        "title": f"fmnist-deploy pipeline report: {config.model_name} v{export.version}",
        "created_at": summary["created_at"],
        "passed": all(p.passed for p in parity),
        "total_seconds": summary["total_seconds"],
        "stages": summary["stages"],
        "machine": {"python": sys.version.split()[0], "tflite_runtime": str(runtime)},
        "int8_metrics": int8_metrics,
        "export": {
            "bundle": str(manifest.bundle_dir),
            "version": export.version,
            "models_config": str(export.models_config),
            "seconds": export.timings,
        },
        "parity": [p.to_dict() for p in parity],
        "artifacts": [{"name": name, **e.to_dict()} for name, e in manifest.files.items()],
        "latency": latency,
        "figures": dict(FIGURES),
        **flipped,
    }
    previous = compare_with_previous(config.base_path, config.model_name, export.version)
    if previous is not None:
        report["previous_version"] = previous
    paths = write_report(config.out_dir, report)
    return PipelineResult(out_dir=config.out_dir, report=report, paths=paths)


def _train(
    config: PipelineConfig, train_config: TrainConfig, stages: _Stages
) -> tuple[Dataset, TrainResult]:
    """Open the dataset (any form fmnist.data reads) and train into the run directory."""
    from fmnist.data import open_dataset
    from fmnist.train.data import data_dir_for
    from fmnist.train.train import train

    with stages("train"):
        data = open_dataset(
            data_dir_for(config.data_dir, download=config.download),
            val_fraction=train_config.val_fraction,
            seed=train_config.seed,
        )
        stages.progress(f"   {data.describe()}")
        for note in data.notes:
            stages.progress(f"   note: {note}")
        result = train(train_config, data, config.run_dir, verbose=2 if config.verbose else 0)
        stages.progress(
            f"   {result.epochs_run} epochs, {result.images_per_s:.0f} img/s, "
            f"best epoch {result.best_epoch}"
        )
    return data, result


def _evaluate(config: PipelineConfig, data: Dataset, stages: _Stages) -> dict[str, Any]:
    """The float model's test metrics; its training figures are copied for the report."""
    from fmnist.train.evaluate import evaluate_run

    with stages("evaluate"):
        float_metrics = evaluate_run(config.run_dir, data.path)
        stages.progress(f"   float test accuracy {float_metrics['accuracy']:.4f}")
    config.figures_dir.mkdir(parents=True, exist_ok=True)
    run = RunDir(config.run_dir)
    for plot in (run.training_curves_plot, run.misclassified_plot):
        shutil.copyfile(plot, config.figures_dir / plot.name)
    return float_metrics


def _export(
    config: PipelineConfig, data: Dataset, head: dict[str, Any], stages: _Stages
) -> ExportResult:
    """Publish the bundle; if the parity gate refuses, report what it measured and stop."""
    from fmnist.export.config import ExportConfig, Int8Options
    from fmnist.export.export import ParityRefused, export_run

    export_config = ExportConfig(
        base_path=config.base_path,
        name=config.model_name,
        data_dir=data.path,
        tolerance=config.tolerance,
        int8=Int8Options(flip_average=config.flip_average),
    )
    with stages("export"):
        try:
            export = export_run(config.run_dir, export_config)
        except ParityRefused as refused:  # exit 1, with a FAIL report of the gate's numbers
            summary = stages.summary()
            paths = write_report(
                config.out_dir,
                head
                | {
                    "created_at": summary["created_at"],
                    "passed": False,
                    "failure": "export refused to publish: a TFLite model is outside tolerance",
                    "total_seconds": summary["total_seconds"],
                    "stages": summary["stages"],
                    "parity": [p.to_dict() for p in refused.parity.values()],
                },
            )
            raise ParityRefused(f"{refused}; report: {paths['html']}") from None
        stages.progress(f"   published {export.bundle_dir}")
    return export


def _serve(
    config: PipelineConfig,
    manifest: Manifest,
    data: Dataset,
    runtime: Runtime,
    stages: _Stages,
) -> tuple[list[ParityResult], list[dict[str, Any]]]:
    """gRPC and REST parity, then every serving path's latency, against `fmnist serve` as a
    child process on free loopback ports (stopped even when a stage fails)."""
    # The pipeline's only imports of the serving stage.
    from fmnist.serving.client import GrpcClient, RestClient
    from fmnist.serving.client.parity import run_served_parity
    from fmnist.serving.server.process import start_server

    with stages("start server"):
        server = start_server(
            *("--model_name", config.model_name),
            *("--model_base_path", str(config.base_path / config.model_name)),
            log_dir=config.out_dir / "logs",
        )
    clients: list[Any] = []
    try:
        clients = [
            GrpcClient(server.grpc_target, config.model_name),
            RestClient(server.rest_url, config.model_name),
        ]
        parity: list[ParityResult] = []
        with stages("served parity (gRPC, REST)"):
            for client in clients:
                client.wait_until_available(60)
                parity.append(
                    run_served_parity(
                        client, manifest.bundle_dir, data.path, tolerance=config.tolerance
                    )
                )
                stages.progress(format_result(parity[-1]))
        with stages("latency"):
            images, _ = next(data.batches("test", 64))
            latency = _latency(config, manifest, clients, runtime, images)
    finally:
        for client in clients:
            client.close()
        code = server.stop()
    if code != 0:
        raise UserError(f"fmnist serve exited with {code} (log {server.log_path})")
    return parity, latency


def _edge_parity(
    config: PipelineConfig, bundle: Path, data: Dataset, runtime: Runtime, stages: _Stages
) -> ParityRun:
    """The published int8 model through the edge runner, as a device would check it. The one
    int8 pass over the test set after export; the report reuses its outputs."""
    with stages("edge parity"):
        run = measure_parity(bundle, data.path, config.tolerance, runtime=runtime)
        stages.progress(format_result(run.result))
    return run


def _reference_metrics(edge: ParityRun, class_names: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Test metrics of the bundle's float reference (the flip-averaged float model)."""
    predicted = edge.reference.argmax(1)
    metrics = compute_metrics(edge.labels, predicted, class_names)
    return metrics | {"classification_report": text_report(edge.labels, predicted, class_names)}


def _draw_float_vs_int8(
    config: PipelineConfig,
    edge: ParityRun,
    float_metrics: dict[str, Any],
    int8_metrics: dict[str, Any],
    class_names: list[str] | tuple[str, ...],
) -> None:
    """Confusion matrices and per-class F1 of the float and int8 models, side by side."""
    from sklearn.metrics import confusion_matrix

    from fmnist.pipeline import figures

    labels = list(range(len(class_names)))
    float_matrix = confusion_matrix(edge.labels, edge.reference.argmax(1), labels=labels)
    int8_matrix = confusion_matrix(edge.labels, edge.probabilities.argmax(1), labels=labels)
    figures.confusion_side_by_side(
        float_matrix, int8_matrix, class_names, config.figures_dir / "confusion.png"
    )
    figures.per_class_f1(
        [c["f1"] for c in float_metrics["per_class"]],
        [c["f1"] for c in int8_metrics["per_class"]],
        class_names,
        config.figures_dir / "per_class_f1.png",
    )


def _report_head(
    config: PipelineConfig,
    train_config: TrainConfig,
    data: Dataset,
    result: TrainResult,
    float_metrics: dict[str, Any],
) -> dict[str, Any]:
    """What every report holds, even one of a pipeline that stopped at the export gate."""
    return {
        "schema": "fmnist-deploy/pipeline-report",
        "schema_version": 1,
        "title": f"fmnist-deploy pipeline report: {config.model_name}",
        "quick": config.quick,
        "flip_average": config.flip_average,
        "machine": {"python": sys.version.split()[0]},
        "data": {
            "data_dir": str(data.path),
            "kind": data.kind,
            "input": data.contract.describe(),
            "notes": list(data.notes),
            "train": data.size("train"),
            "validation": data.size("validation"),
            "test": data.size("test"),
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
        "figures": {key: FIGURES[key] for key in ("training_curves", "misclassified")},
    }


def _latency(
    config: PipelineConfig,
    manifest: Manifest,
    clients: list[Any],
    runtime: Runtime,
    images: np.ndarray,
) -> list[dict[str, Any]]:
    """Batch-1 and batch-64 latency of every serving path, side by side in this process."""
    import tensorflow as tf

    from fmnist.edge.classifier import Classifier
    from fmnist.pipeline.latency import measure

    version = manifest.model_version  # pinned: REST then needs no version lookup
    serve = tf.saved_model.load(str(manifest.bundle_dir)).signatures["serving_default"]
    tflite = {
        kind: Classifier(manifest.tflite(kind).path, runtime=runtime, contract=manifest.contract)
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
