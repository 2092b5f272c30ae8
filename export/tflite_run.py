"""Run a converted TFLite model on the test images, as export judges it before publishing.

The model's tensors say how pixels go in and scores come out: a uint8 input must take the
pixels as they are (the int8 model's calibration pins that; anything else is a conversion
bug, refused), a float32 input takes `contract.scale`; an int8 output is dequantized with
its own scale and zero point. Probed in a child process first: a converted model that
aborts TFLite's kernels (as some int8 ADDs do) must be a refusal, not the end of export.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from fmnist.contract import InputContract
from fmnist.edge.model_probe import ModelCrashed, check_in_child
from fmnist.edge.runtime import Runtime
from fmnist.errors import UserError


def _raw_pixels(details: dict[str, Any]) -> bool:
    scale, zero_point = details["quantization"]
    exact = abs(scale * 255.0 - 1.0) < 1e-6 or abs(scale - 1.0) < 1e-6
    return np.dtype(details["dtype"]) == np.uint8 and zero_point == 0 and exact


def _model_input(details: dict[str, Any], images: np.ndarray, contract: InputContract):
    if np.dtype(details["dtype"]) == np.float32:
        return contract.scale(images)
    if not _raw_pixels(details):
        raise UserError(
            f"the int8 model's input quantization {details['quantization']} does not take "
            "uint8 pixels as they are"
        )
    return images


def _scores(details: dict[str, Any], values: np.ndarray) -> np.ndarray:
    scale, zero_point = details["quantization"]
    if not scale:
        return values.astype(np.float32)
    return (values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def tflite_probabilities(
    content: bytes,
    images: np.ndarray | Iterable[np.ndarray],
    contract: InputContract,
    runtime: Runtime,
    batch_size: int = 1000,
) -> np.ndarray:
    """Class probabilities float32 [N, classes] of a one-input, one-output TFLite model, for
    uint8 images or an iterable of their batches (a test split streamed from disk)."""
    try:
        check_in_child(content, runtime.name)
        interpreter = runtime.interpreter_class(model_content=content)
    except ModelCrashed as err:
        raise UserError(str(err)) from None
    except (ValueError, RuntimeError) as err:
        raise UserError(f"{runtime} cannot load it: {err}") from None
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    batches = images
    if isinstance(images, np.ndarray):
        batches = (images[i : i + batch_size] for i in range(0, len(images), batch_size))
    parts, allocated = [], None
    for pixels in batches:
        batch = _model_input(inp, pixels, contract)
        if len(batch) != allocated:
            interpreter.resize_tensor_input(inp["index"], batch.shape, strict=False)
            interpreter.allocate_tensors()
            allocated = len(batch)
        interpreter.set_tensor(inp["index"], batch)
        interpreter.invoke()
        parts.append(_scores(out, interpreter.get_tensor(out["index"])))
    return np.concatenate(parts)
