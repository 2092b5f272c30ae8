"""The SavedModel TF Serving loads: a uint8 `images` signature with normalization inside.

Written through Keras' ExportArchive (not a tf.Module wrapping the Keras model, which
TF loads but converts badly) with one endpoint, `serving_default`:

    images         uint8   [-1, 28, 28]   raw pixels
 -> probabilities  float32 [-1, 10]
    class_ids      int64   [-1]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from fmnist.preprocessing import preprocess
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.tensor_proto import to_tensor_proto
from fmnist.serving.wire.tfrecord import read_records, write_records

SIGNATURE = "serving_default"
INPUT = {"images": {"dtype": "uint8", "shape": [-1, 28, 28]}}
OUTPUTS = {
    "probabilities": {"dtype": "float32", "shape": [-1, 10]},
    "class_ids": {"dtype": "int64", "shape": [-1]},
}
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


def write_saved_model(model: keras.Model, path: Path) -> None:
    """Save `model` behind the uint8 `serving_default` signature at `path` (a flip-averaged
    model, export/flip_average.py, puts test-time augmentation in the graph)."""
    archive = keras.export.ExportArchive()
    archive.track(model)

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.uint8, name="images")])
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = preprocess(images)
        probabilities = model(pixels, training=False)
        return {
            "probabilities": probabilities,
            "class_ids": tf.argmax(probabilities, axis=1, output_type=tf.int64),
        }

    archive.add_endpoint(SIGNATURE, serve)
    archive.write_out(str(path), verbose=False)


def signature_outputs(path: Path, images: np.ndarray, batch_size: int = 1000) -> dict[str, Any]:
    """Run the saved signature (as TF Serving would) on uint8 images; concatenated outputs."""
    loaded = tf.saved_model.load(str(path))
    serve = loaded.signatures[SIGNATURE]
    parts = [
        serve(images=tf.constant(images[i : i + batch_size]))
        for i in range(0, len(images), batch_size)
    ]
    return {key: np.concatenate([p[key].numpy() for p in parts]) for key in OUTPUTS}


def write_warmup(
    path: Path, model_name: str, images: np.ndarray, batch_sizes: tuple[int, ...]
) -> Path:
    """TF Serving's warmup file: a TFRecord of PredictionLogs with real Predict requests."""
    warmup = path / WARMUP_FILE
    warmup.parent.mkdir(parents=True, exist_ok=True)
    records = []
    for batch in batch_sizes:
        log = pb.PredictionLog()
        request = log.predict_log.request
        request.model_spec.name, request.model_spec.signature_name = model_name, SIGNATURE
        request.inputs["images"].CopyFrom(to_tensor_proto(images[:batch].astype(np.uint8)))
        records.append(log.SerializeToString())
    write_records(warmup, records)
    return warmup


def read_warmup(path: Path) -> list[Any]:
    """The PredictionLogs in a warmup file (for checks and tests)."""
    return [pb.PredictionLog.FromString(record) for record in read_records(path)]
