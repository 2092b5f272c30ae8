"""Run a TFLite image classifier on raw uint8 images, whatever its input/output types.

The input contract (a bundle's manifest, else the model's own input tensor) says the image
shape, the pixel scaling and the class names; the model's quantization parameters (read from
the interpreter) map raw pixels to its input and its output back to probabilities, so uint8,
int8 and float32 models are all used the same way. A model that does not take one image and
give one score per class is refused with a one-line error (edge/tensors.py).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist.contract import InputContract
from fmnist.edge.model_check import check_tflite_structure
from fmnist.edge.model_probe import ModelCrashed, check_in_child
from fmnist.edge.runtime import Runtime, select_runtime
from fmnist.edge.tensors import (
    ModelError,
    Quantization,
    guess_scaling,
    image_shape,
    score_output,
)
from fmnist.errors import UserError
from fmnist.manifest import MANIFEST_NAME, Manifest, load_manifest

__all__ = ["Classifier", "ModelError", "Quantization", "ResolvedModel", "resolve_model"]

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
class ResolvedModel:
    path: Path
    manifest: Manifest | None  # None for a bare .tflite file

    @property
    def contract(self) -> InputContract | None:
        return None if self.manifest is None else self.manifest.contract

    @property
    def class_names(self) -> tuple[str, ...] | None:
        contract = self.contract
        return None if contract is None else contract.class_names


def resolve_model(model_or_bundle: str | os.PathLike, kind: str = "int8") -> ResolvedModel:
    """A bundle directory (its `kind` model, checksum verified) or a .tflite file.

    A .tflite file inside a bundle is verified against that bundle's manifest (whose input
    contract then applies); a bare .tflite file elsewhere is described by its own tensors.
    """
    path = Path(model_or_bundle)
    if path.is_dir():
        if not (path / MANIFEST_NAME).is_file():
            raise ModelError(
                f"{path}: no {MANIFEST_NAME} in this directory (not an exported "
                "bundle; pass the bundle directory or a .tflite file)"
            )
        manifest = load_manifest(path)
        return ResolvedModel(manifest.verify_file(manifest.tflite(kind).file), manifest)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file or bundle directory")
    if (path.parent / MANIFEST_NAME).is_file():
        manifest = load_manifest(path.parent)
        relpath = path.resolve().relative_to(manifest.bundle_dir.resolve()).as_posix()
        manifest.verify_file(relpath)
        return ResolvedModel(path, manifest)
    return ResolvedModel(path, None)


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
    """A loaded TFLite image classifier: `predict_proba(uint8 [N, H, W, C]) -> float32 [N, C]`.

    `contract` (a bundle's) says the image shape, pixel scaling and class names, and the
    model must match it; without one they come from the model's own tensors: `class_names`
    (else "0", "1", ...) and `scaling` (else what the input's quantization was made for)."""

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        num_threads: int | None = None,
        runtime: Runtime | None = None,
        contract: InputContract | None = None,
        class_names: Sequence[str] | None = None,
        scaling: str | None = None,
        probe: bool = False,
    ) -> None:
        """`probe`: first load and run the model once in a child process (~0.3 s), so that
        a model that aborts the runtime is a ModelError rather than the end of this process."""
        check_num_threads(num_threads)
        self.path = Path(model_path)
        self.runtime = runtime or select_runtime()
        content = read_model(self.path)
        if probe:
            probe_model(content, self.path, self.runtime)
        inp, out = self._load(content, num_threads)
        self.contract = self._contract(inp, out, contract, class_names, scaling)
        self.class_names = self.contract.class_names
        self._input_index, self._output_index = inp["index"], out["index"]
        self.input_shape = tuple(int(d) for d in inp["shape"])  # (1, H, W, C) or (1, H, W)
        self.input_quant, self.output_quant = Quantization.of(inp), Quantization.of(out)
        self._batch = self.input_shape[0]
        self._sample_shape = self.input_shape[1:]
        # Output dequantization, computed once (batch-1 latency is microseconds).
        self._out_zero_point = np.float32(self.output_quant.zero_point)
        self._out_scale = np.float32(self.output_quant.scale)
        self._out_table = self._dequantize_table()
        self._shapes = {self.contract.shape}
        if self.contract.channels == 1:
            self._shapes.add(self.contract.shape[:2])
        # A uint8 input with zero point 0 takes the pixels as they are, whatever the scaling:
        # exported int8 models rescale inside (no zero point maps 0-255 onto [-1, 1]).
        quant = self.input_quant
        self._raw_pixels = quant.dtype == np.uint8 and quant.zero_point == 0

    def _load(self, content: bytes, num_threads: int | None) -> tuple[dict, dict]:
        """Build the interpreter; the details of its image input and its score output."""
        try:
            self.interpreter = self.runtime.interpreter_class(
                model_content=content, num_threads=num_threads
            )
            self.interpreter.allocate_tensors()
            inputs = self.interpreter.get_input_details()
            outputs = self.interpreter.get_output_details()
        except (ValueError, RuntimeError) as err:  # e.g. the XNNPACK delegate refusing it
            raise ModelError(
                f"{self.path}: {self.runtime} cannot load it: {first_line(err)}"
            ) from None
        if len(inputs) != 1:
            raise ModelError(f"{self.path}: has {len(inputs)} inputs; expected one image input")
        return inputs[0], score_output(self.path, outputs)

    def _contract(
        self,
        inp: dict,
        out: dict,
        contract: InputContract | None,
        class_names: Sequence[str] | None,
        scaling: str | None,
    ) -> InputContract:
        """The given contract, checked against the model, or one read from the model."""
        shape, classes = image_shape(self.path, inp), int(out["shape"][1])
        if contract is None:
            names = tuple(class_names) if class_names else tuple(map(str, range(classes)))
            guessed = scaling or guess_scaling(Quantization.of(inp))
            try:
                contract = InputContract(*shape, names, guessed)
            except UserError as err:
                raise ModelError(f"{self.path}: {err}") from None
        if contract.shape != shape:
            raise ModelError(
                f"{self.path}: takes {'x'.join(map(str, shape))} images, but its contract "
                f"says {contract.describe()}"
            )
        if contract.num_classes != classes:
            raise ModelError(
                f"{self.path}: output shape {out['shape'].tolist()} does not give one score for "
                f"each of the {contract.num_classes} classes"
            )
        return contract

    def to_input(self, images: np.ndarray) -> np.ndarray:
        """Raw uint8 pixels -> the model's input tensor values (quantized if it is)."""
        if self._raw_pixels:
            return images
        real = self.contract.scale(images)
        q = self.input_quant
        if not q.quantized:
            return real.astype(q.dtype, copy=False)
        info = np.iinfo(q.dtype)
        return np.clip(np.round(real / q.scale) + q.zero_point, info.min, info.max).astype(q.dtype)

    def _dequantize_table(self) -> np.ndarray | None:
        """(q - zero_point) * scale in float32 for each 8-bit q, at index q mod 256: one
        lookup instead of three array passes, the same bits."""
        q = self.output_quant
        if not q.quantized or q.dtype not in (np.int8, np.uint8):
            return None
        values = np.arange(256, dtype=np.uint8).view(q.dtype).astype(np.float32)
        values -= self._out_zero_point
        values *= self._out_scale
        return values

    def from_output(self, values: np.ndarray) -> np.ndarray:
        """The model's output tensor -> float32 probabilities (or scores, as the model gives)."""
        if not self.output_quant.quantized:
            return values.astype(np.float32, copy=False)
        if self._out_table is not None:
            return self._out_table.take(values, mode="wrap")
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

    def check_images(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, C] of the contract (or [N, H, W] for C = 1), else a UserError."""
        fits = type(images) is np.ndarray and images.dtype == np.uint8
        if fits and images.shape[1:] in self._shapes:  # the common case, checked cheaply
            return images
        images = np.asarray(images)
        height, width, channels = self.contract.shape
        plain = channels == 1 and images.ndim == 3 and images.shape[1:] == (height, width)
        if images.dtype != np.uint8 or not (plain or images.shape[1:] == self.contract.shape):
            raise UserError(
                f"expected uint8 images [N, {height}, {width}, {channels}], got "
                f"{images.dtype} {list(images.shape)}"
            )
        return images

    def predict_proba(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities for uint8 images [N, H, W, C] (see check_images)."""
        images = self.check_images(images)
        if len(images) <= batch_size:
            return self.from_output(self.invoke(self.to_input(images)))
        return np.concatenate(
            [
                self.from_output(self.invoke(self.to_input(images[i : i + batch_size])))
                for i in range(0, len(images), batch_size)
            ]
        )
