"""Run a Fashion-MNIST TFLite model on raw uint8 images, whatever its input/output types.

The model's own quantization parameters (read from the interpreter) map raw pixels to its
input and its output back to probabilities, so uint8, int8 and float32 models are all used
the same way. A model that does not take one 28x28 image and give one score per class is
refused with a clear error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist.dataset import CLASS_NAMES
from fmnist.edge.model_check import check_tflite_structure
from fmnist.edge.model_probe import ModelCrashed, check_in_child
from fmnist.edge.runtime import Runtime, select_runtime
from fmnist.errors import UserError
from fmnist.manifest import MANIFEST_NAME, Manifest, load_manifest
from fmnist.preprocessing import PIXEL_SCALE, scale_pixels


class ModelError(UserError):
    """A model file that is missing, truncated, not TFLite, or fails its checksum."""


# TFLite starts one thread per request without a limit; 100,000 crash the process.
THREADS_PER_CPU = 4


def max_threads() -> int:
    """The most interpreter threads we allow: a few per CPU (more only add contention)."""
    return (os.cpu_count() or 1) * THREADS_PER_CPU


def check_num_threads(value: int | None, name: str = "num_threads") -> None:
    """Raise UserError unless `value` is None (the runtime's default) or 1..max_threads()."""
    if value is not None and not 1 <= value <= max_threads():
        raise UserError(
            f"{name} must be between 1 and {max_threads()} ({THREADS_PER_CPU} per CPU on this "
            f"machine), got {value}"
        )


def first_line(err: BaseException, limit: int = 300) -> str:
    """A runtime's error as one bounded line (TFLite joins a whole log into one message)."""
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


@dataclass(frozen=True)
class Quantization:
    """real = (q - zero_point) * scale; scale 0 means the tensor is not quantized."""

    dtype: np.dtype
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    manifest: Manifest | None
    class_names: tuple[str, ...]


def resolve_model(model_or_bundle: str | os.PathLike, kind: str = "int8") -> ResolvedModel:
    """A bundle directory (its `kind` model, checksum verified) or a .tflite file.

    A .tflite file inside a bundle is verified against that bundle's manifest; a bare
    .tflite file elsewhere is used as is, with the Fashion-MNIST class names.
    """
    path = Path(model_or_bundle)
    if path.is_dir():
        if not (path / MANIFEST_NAME).is_file():
            raise ModelError(
                f"{path}: no {MANIFEST_NAME} in this directory (not an exported "
                "bundle; pass the bundle directory or a .tflite file)"
            )
        manifest = load_manifest(path)
        model_path = manifest.verify_file(manifest.tflite(kind).file)
        return ResolvedModel(model_path, manifest, tuple(manifest.class_names))
    if not path.is_file():
        raise ModelError(f"{path}: no such model file or bundle directory")
    if (path.parent / MANIFEST_NAME).is_file():
        manifest = load_manifest(path.parent)
        relpath = path.resolve().relative_to(manifest.bundle_dir.resolve()).as_posix()
        manifest.verify_file(relpath)
        return ResolvedModel(path, manifest, tuple(manifest.class_names))
    return ResolvedModel(path, None, CLASS_NAMES)


def read_model(path: Path) -> bytes:
    """The bytes of a TFLite model file; a ModelError if unreadable, not TFLite, truncated
    or corrupt (checked before any runtime parses it: a runtime trusts its offsets)."""
    try:
        content = path.read_bytes()
    except OSError as err:
        raise ModelError(f"{path}: cannot read model file: {err.strerror}") from None
    # A TFLite flatbuffer carries the identifier "TFL3" at byte offset 4.
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ModelError(f"{path}: not a TFLite model (no TFL3 identifier)")
    try:
        check_tflite_structure(content)
    except ValueError as err:
        raise ModelError(f"{path}: truncated or corrupt TFLite model: {err}") from None
    return content


def probe_model(content: bytes, path: Path, runtime: Runtime) -> None:
    """A ModelError if loading and running `content` once kills a child process: some
    TFLite kernels abort instead of raising, and a command should say so, not die with it."""
    try:
        check_in_child(content, runtime.name)
    except ModelCrashed as err:
        raise ModelError(f"{path}: {err}") from None


class Classifier:
    """A loaded TFLite model: `predict_proba(uint8 [N, 28, 28]) -> float32 [N, classes]`."""

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        num_threads: int | None = None,
        runtime: Runtime | None = None,
        class_names: tuple[str, ...] = CLASS_NAMES,
        probe: bool = False,
    ) -> None:
        """`probe`: first load and run the model once in a child process (~0.3 s), so that
        a model that aborts the runtime is a ModelError rather than the end of this process."""
        check_num_threads(num_threads)
        self.path = Path(model_path)
        self.runtime = runtime or select_runtime()
        self.class_names = class_names
        content = read_model(self.path)
        if probe:
            probe_model(content, self.path, self.runtime)
        try:
            self.interpreter = self.runtime.interpreter_class(
                model_content=content, num_threads=num_threads
            )
            self.interpreter.allocate_tensors()
            inputs, outputs = (
                self.interpreter.get_input_details(),
                self.interpreter.get_output_details(),
            )
        except (ValueError, RuntimeError) as err:  # e.g. the XNNPACK delegate refusing it
            raise ModelError(
                f"{self.path}: {self.runtime} cannot load it: {first_line(err)}"
            ) from None
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"{self.path}: has {len(inputs)} inputs and {len(outputs)} outputs; expected "
                "one image input and one class-score output"
            )
        (inp,), (out,) = inputs, outputs
        if tuple(inp["shape"][1:]) not in ((28, 28), (28, 28, 1)):
            raise ModelError(
                f"{self.path}: input shape {inp['shape'].tolist()} is not a 28x28 grayscale image"
            )
        if len(out["shape"]) != 2 or out["shape"][1] != len(class_names):
            raise ModelError(
                f"{self.path}: output shape {out['shape'].tolist()} does not give one score for "
                f"each of the {len(class_names)} classes"
            )
        self._input_index, self._output_index = inp["index"], out["index"]
        self.input_shape = tuple(int(d) for d in inp["shape"])  # (1, 28, 28, 1) or (1, 28, 28)
        self.input_quant = Quantization(np.dtype(inp["dtype"]), *inp["quantization"])
        self.output_quant = Quantization(np.dtype(out["dtype"]), *out["quantization"])
        self._batch = self.input_shape[0]
        self._sample_shape = self.input_shape[1:]
        # Output dequantization constants, computed once (batch-1 latency is microseconds).
        self._out_zero_point = np.float32(self.output_quant.zero_point)
        self._out_scale = np.float32(self.output_quant.scale)
        # uint8 input with scale 1/255 and zero point 0 takes raw pixels as they are.
        q = self.input_quant
        self._raw_pixels = (
            q.dtype == np.uint8 and q.zero_point == 0 and abs(q.scale * PIXEL_SCALE - 1.0) < 1e-6
        )

    def to_input(self, images: np.ndarray) -> np.ndarray:
        """Raw uint8 pixels -> the model's input tensor values (quantized if it is)."""
        if self._raw_pixels:
            return images
        real = scale_pixels(images)
        q = self.input_quant
        if not q.quantized:
            return real.astype(q.dtype)
        info = np.iinfo(q.dtype)
        return np.clip(np.round(real / q.scale) + q.zero_point, info.min, info.max).astype(q.dtype)

    def from_output(self, values: np.ndarray) -> np.ndarray:
        """The model's output tensor -> float32 probabilities."""
        if not self.output_quant.quantized:
            return values.astype(np.float32, copy=False)
        real = values.astype(np.float32)
        real -= self._out_zero_point
        real *= self._out_scale
        return real

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            self.interpreter.resize_tensor_input(
                self._input_index, (batch, *self.input_shape[1:]), strict=False
            )
            self.interpreter.allocate_tensors()
            self._batch = batch

    def invoke(self, model_input: np.ndarray) -> np.ndarray:
        """One interpreter call on an already-converted batch; returns the raw output.

        A corrupt model can load and still fail here (a delegate or kernel refusing a
        tensor): that is a ModelError, like a failure to load.
        """
        try:
            self._resize(len(model_input))
            self.interpreter.set_tensor(
                self._input_index, model_input.reshape((len(model_input), *self._sample_shape))
            )
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self._output_index)
        except (ValueError, RuntimeError) as err:
            raise ModelError(
                f"{self.path}: {self.runtime} failed to run it: {first_line(err)}"
            ) from None

    def predict_proba(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities for uint8 images [N, 28, 28] (or [N, 28, 28, 1])."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.shape[1:3] != (28, 28):
            raise UserError(
                f"expected uint8 images [N, 28, 28], got {images.dtype} {list(images.shape)}"
            )
        if len(images) <= batch_size:
            return self.from_output(self.invoke(self.to_input(images)))
        return np.concatenate(
            [
                self.from_output(self.invoke(self.to_input(images[i : i + batch_size])))
                for i in range(0, len(images), batch_size)
            ]
        )
