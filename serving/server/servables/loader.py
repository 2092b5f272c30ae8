"""What loads a version directory into a servable (TF Serving's loaders): its model.tflite
with `--prefer_tflite_model`, else its SavedModel (the only import of TensorFlow); then
warm-up replay and the batching wrapper, as the server's flags ask.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fmnist.serving.server.servables.base import Servable
from fmnist.serving.server.servables.batch_scheduler import BatchingConfig, BatchObserver
from fmnist.serving.server.servables.batching import with_batching
from fmnist.serving.server.servables.tflite import TFLITE_FILE
from fmnist.serving.server.servables.warmup import with_warmup

Loader = Callable[[Path], Servable]
SAVED_MODEL_NEEDS_TF = (
    "a SavedModel needs TensorFlow, which is not installed (pip install 'fmnist-deploy[tf]'); "
    f"--prefer_tflite_model with a {TFLITE_FILE} in the version directory does not"
)


def version_loader(
    prefer_tflite: bool,
    *,
    warmup: bool = False,
    batching: BatchingConfig | None = None,
    observe_batch: BatchObserver | None = None,
    tf_threads: tuple[int, int] = (0, 0),
) -> Loader:
    """The loader for a server's versions, with warm-up replay and batching as asked;
    `tf_threads`: a SavedModel session's (intra-op, inter-op) threads, 0 for TF's choice."""
    loader: Loader = _model_loader(prefer_tflite, tf_threads)
    if warmup:
        loader = with_warmup(loader)
    if batching is not None:
        loader = with_batching(loader, batching, observe_batch)
    return loader


def _model_loader(prefer_tflite: bool, tf_threads: tuple[int, int]) -> Loader:
    def load(version_dir: Path) -> Servable:
        if prefer_tflite and (version_dir / TFLITE_FILE).is_file():
            from fmnist.serving.server.servables.tflite import TfliteServable

            return TfliteServable(version_dir)
        try:
            from fmnist.serving.server.servables.saved_model import SavedModelServable
        except ModuleNotFoundError:  # tensorflow is not installed
            raise RuntimeError(SAVED_MODEL_NEEDS_TF) from None
        except ImportError as err:
            raise RuntimeError(f"TensorFlow is installed but fails to import: {err}") from None
        return SavedModelServable(version_dir, *tf_threads)

    return load
