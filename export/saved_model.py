"""The SavedModel TF Serving loads: a uint8 `images` signature with the scaling inside.

Written through Keras' ExportArchive (not a tf.Module wrapping the Keras model, which
TF loads but converts badly) with one endpoint, `serving_default`, shaped by the input
contract (fmnist/contract.py):

    images         uint8   [-1, H, W, C]   raw pixels
 -> probabilities  float32 [-1, num_classes]
    class_ids      int64   [-1]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from fmnist.contract import InputContract
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.tensor_proto import to_tensor_proto
from fmnist.serving.wire.tfrecord import read_records, write_records

SIGNATURE = "serving_default"
INPUT_NAME = "images"
OUTPUT_NAMES = ("probabilities", "class_ids")
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


def input_spec(contract: InputContract) -> dict[str, Any]:
    """The signature's input, as the manifest records it."""
    return {INPUT_NAME: {"dtype": "uint8", "shape": [-1, *contract.shape]}}


def output_specs(contract: InputContract) -> dict[str, Any]:
    """The signature's outputs, as the manifest records them."""
    return {
        "probabilities": {"dtype": "float32", "shape": [-1, contract.num_classes]},
        "class_ids": {"dtype": "int64", "shape": [-1]},
    }


def write_saved_model(model: keras.Model, path: Path, contract: InputContract) -> None:
    """Save `model` behind the uint8 `serving_default` signature at `path` (a flip-averaged
    model, export/flip_average.py, puts test-time augmentation in the graph)."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = tf.TensorSpec([None, *contract.shape], tf.uint8, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = contract.scale_tensor(images)
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
    return {key: np.concatenate([p[key].numpy() for p in parts]) for key in OUTPUT_NAMES}


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
        request.inputs[INPUT_NAME].CopyFrom(to_tensor_proto(images[:batch].astype(np.uint8)))
        records.append(log.SerializeToString())
    write_records(warmup, records)
    return warmup


def read_warmup(path: Path) -> list[Any]:
    """The PredictionLogs in a warmup file (for checks and tests)."""
    return [pb.PredictionLog.FromString(record) for record in read_records(path)]
