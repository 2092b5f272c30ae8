"""TFLite conversion: the float32 reference model and the full-integer int8 model.

Both read the input contract (fmnist/contract.py). The float32 model takes the float
model's input: `contract.scale` of the pixels, [N, H, W, C]. The int8 model takes uint8
pixels [N, H, W, C] as they are (the SavedModel's `images`, so the same requests and
warm-up records serve both) and returns int8 scores. Calibration always includes an
all-0 and an all-255 image, which pins the input range to the scaling's image of 0-255:
uint8 scale 1/255 ("unit"; "symmetric" gets a Rescaling to [-1, 1] in the graph, since no
integer zero point maps 0-255 onto [-1, 1] exactly) or 1 ("raw", "model"), zero point 0,
so raw pixels map exactly. The ReLU outputs' channel ranges are first evened out in an
equivalent float model (export/equalize.py), then the biases absorb the mean shift int8
weight rounding causes (export/bias_correction.py). Full-integer builtins (no float
fallback) keep the model loadable by tflite-runtime 2.14 as well as ai-edge-litert.
TF Serving's `model.tflite` is the int8 model with float outputs (`tflite_serving`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from fmnist.contract import InputContract
from fmnist.export.bias_correction import correct_rounding_bias
from fmnist.export.config import Int8Options
from fmnist.export.equalize import equalize_activations
from fmnist.export.flip_average import flip_averaged

INT8_FILE = "model_int8.tflite"
FLOAT32_FILE = "model_float32.tflite"
# TF Serving's --prefer_tflite_model serves <version>/model.tflite: the int8 model with
# the SavedModel's outputs (export/tflite_serving.py).
SERVING_FILE = "model.tflite"


def representative_images(
    images: np.ndarray, contract: InputContract, pins: str = "images"
) -> np.ndarray:
    """Calibration images that pin the input range to 0-255, then the sample: an all-0 and
    an all-255 image ("images"), or the first image with one pixel 0 and one 255 ("pixels")."""
    if pins == "pixels":
        pinned = images[:1].copy()
        pinned[0, 0, 0], pinned[0, 0, -1] = 0, 255
        return np.concatenate([pinned, images])
    black, white = np.zeros(contract.shape, np.uint8), np.full(contract.shape, 255, np.uint8)
    return np.concatenate([np.stack([black, white]), images])


def int8_input_contract(contract: InputContract) -> InputContract:
    """The scaling of the float input the int8 model is calibrated on: "symmetric" is fed
    as "unit" and rescaled inside (`_images_input`), the others as they are."""
    return contract.with_scaling("unit") if contract.scaling == "symmetric" else contract


def _dataset(
    images: np.ndarray, contract: InputContract
) -> Callable[[], Iterator[list[np.ndarray]]]:
    def generate() -> Iterator[list[np.ndarray]]:
        for image in images:
            yield [contract.scale(image[None])]

    return generate


def _convert(converter: tf.lite.TFLiteConverter) -> bytes:
    """Convert without Keras' export listing (dozens of "Captures" lines) on stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def _images_input(model: keras.Model, contract: InputContract) -> keras.Model:
    """`model` behind an `images` [N, H, W, C] input (the TFLite tensors' name), taking
    `int8_input_contract(contract)`'s scaling."""
    images = keras.Input(contract.shape, name="images")
    pixels = images
    if int8_input_contract(contract) != contract:  # unit -> symmetric, inside the graph
        pixels = keras.layers.Rescaling(2.0, offset=-1.0, name="to_symmetric")(images)
    return keras.Model(images, model(pixels))


def convert_float32(model: keras.Model, contract: InputContract) -> bytes:
    """The float32 TFLite model (a reference for the int8 one): `contract.scale`d input."""
    images = keras.Input(contract.shape, name="images")
    wrapped = keras.Model(images, model(images))
    return _convert(tf.lite.TFLiteConverter.from_keras_model(wrapped))


def _int8_converter(
    model: keras.Model, calibration: np.ndarray, contract: InputContract, options: Int8Options
) -> tf.lite.TFLiteConverter:
    images = representative_images(calibration, contract, options.input_pins)
    scale = contract.scale
    model = equalize_activations(model, images, options.equalize_alpha, scale)  # a plain chain
    if options.bias_correction:  # after equalization: it corrects what the converter rounds
        model = correct_rounding_bias(model, images, options.per_channel, scale)
    if options.flip_average:
        model = flip_averaged(model)
    converter = tf.lite.TFLiteConverter.from_keras_model(_images_input(model, contract))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _dataset(images, int8_input_contract(contract))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    # The converter's only switch for per-tensor weights is private.
    converter._experimental_disable_per_channel = not options.per_channel
    return converter


def convert_int8(
    model: keras.Model,
    calibration: np.ndarray,
    contract: InputContract,
    options: Int8Options | None = None,
) -> bytes:
    """Full-integer int8: int8 weights and activations, uint8 input, int8 output.

    With export's `options` (the defaults): weights get one scale per output channel (one
    per tensor is there for benchmarks/bench_calibration.py, which measures the
    difference), the ReLU outputs are first equalized across channels (export/equalize.py),
    the biases corrected for weight rounding (export/bias_correction.py), and
    `flip_average` wraps the model in test-time flip averaging (export/flip_average.py).
    """
    converter = _int8_converter(model, calibration, contract, options or Int8Options())
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.int8
    with warnings.catch_warnings():  # the uint8 input's range is known: the extremes pin it
        warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected")
        return _convert(converter)


def convert_variant(
    model: keras.Model, calibration: np.ndarray, contract: InputContract, variant: str
) -> bytes:
    """Quantizations export does not ship, for benchmarks/bench_calibration.py to show where
    int8 disagreement comes from: "dynamic-range" (int8 weights, float activations) and
    "16x8" (int16 activations, int8 weights; TFLite runs it on reference kernels, no XNNPACK).
    Both keep float input and output and the model's own weights (no equalization or bias
    correction)."""
    if variant == "dynamic-range":
        converter = tf.lite.TFLiteConverter.from_keras_model(_images_input(model, contract))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "16x8":
        as_trained = Int8Options(equalize_alpha=0.0, bias_correction=False)
        converter = _int8_converter(model, calibration, contract, as_trained)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    else:
        raise ValueError(f"unknown variant {variant!r}; choose dynamic-range or 16x8")
    return _convert(converter)


def tensor_specs(model_content: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """Input and output specs (dtype, shape, and scale/zero point when quantized)."""
    from fmnist.edge.runtime import select_runtime

    interpreter = select_runtime().interpreter_class(model_content=model_content)

    def spec(details: dict[str, Any]) -> dict[str, Any]:
        shape = [int(d) for d in details.get("shape_signature", details["shape"])]
        entry: dict[str, Any] = {"dtype": np.dtype(details["dtype"]).name, "shape": shape}
        scale, zero_point = details["quantization"]
        if scale:
            entry.update(scale=float(scale), zero_point=int(zero_point))
        return entry

    (inp,) = interpreter.get_input_details()
    (out,) = interpreter.get_output_details()
    return spec(inp), spec(out)


def write_quantization_report(
    model: keras.Model,
    calibration: np.ndarray,
    debug_images: np.ndarray,
    out_dir: Path,
    contract: InputContract,
    options: Int8Options | None = None,
) -> Path:
    """Per-layer quantization error (TFLite's QuantizationDebugger) as CSV plus a summary.

    Layers are ranked by RMSE over the quantization scale: values near 0.3 are the
    rounding noise of a well-quantized layer; much larger ones lost accuracy.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=_int8_converter(model, calibration, contract, options or Int8Options()),
        debug_dataset=_dataset(debug_images, int8_input_contract(contract)),
    )
    debugger.run()
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    (out_dir / "layer_statistics.csv").write_text(buffer.getvalue())
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    for row in rows:
        scale = float(row.get("scale") or 0) or math.nan
        row["rmse_over_scale"] = math.sqrt(float(row["mean_squared_error"])) / scale
    rows.sort(key=lambda r: -r["rmse_over_scale"] if math.isfinite(r["rmse_over_scale"]) else 0)
    lines = [
        "# Per-layer int8 quantization error",
        "",
        f"QuantizationDebugger over {len(debug_images)} images; worst layers first. "
        "RMSE/scale near 0.3 is plain rounding noise; much larger values lost accuracy.",
        "",
        "| op | tensor | RMSE/scale | max abs error | mean error | scale |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['op_name']} | {row['tensor_name']} | {row['rmse_over_scale']:.3f} | "
            f"{float(row['max_abs_error']):.4g} | {float(row['mean_error']):.4g} | "
            f"{float(row['scale']):.4g} |"
        )
    report = out_dir / "quantization_report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
