"""One TFLite version, served as TF Serving's TfLiteSession serves `<version>/model.tflite`,
with no TensorFlow (`fmnist.edge.runtime`'s interpreter), so a Raspberry Pi can serve it.

As in tflite_session.cc, a model without SignatureDef metadata gets one `serving_default`
predict signature of its tensors (aliases without `:N`); one with that metadata
(`tflite_signatures`) is served with those. Requests feed the model's own types, resized
to the request after being held to its shape signature (any batch size). A pool of
interpreters (one thread each, one per CPU) serves concurrent requests.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.edge.classifier import ModelError, first_line, probe_model, read_model
from fmnist.edge.runtime import Runtime, select_runtime
from fmnist.serving.server.servables import validation
from fmnist.serving.server.servables.base import Busy, Port, Ports, SignatureServable
from fmnist.serving.server.servables.tflite_signatures import read_signature_defs
from fmnist.serving.server.servables.validation import TensorSpec
from fmnist.serving.wire import dtypes
from fmnist.serving.wire.signature import DEFAULT_SIGNATURE, PREDICT_METHOD, Signature, TensorInfo
from fmnist.serving.wire.status import Code, StatusError

TFLITE_FILE = "model.tflite"  # TF Serving's name, read with --prefer_tflite_model
# TF Serving's TfLiteSession wording for a failed step; the runtime's own reason is logged.
_FAILED = {
    "resize": "Failed to resize input tensor",
    "allocate": "Failed to allocate tensors",
    "invoke": "Failed to invoke TfLite interpreter",
}


class TfliteLoadError(Exception):
    """A version directory's model.tflite cannot be served."""


def legacy_name(tensor_name: str) -> str:
    """TF Serving's alias for a tensor: its name up to the first ':' (`x:0` -> `x`)."""
    return tensor_name.split(":", 1)[0]


def _tf_dtype(details: dict[str, Any]) -> int:
    dtype = np.dtype(details["dtype"])  # string tensors come as numpy bytes_: DT_STRING
    try:
        return dtypes.dtype_of(np.empty(0, dtype))
    except StatusError:
        raise TfliteLoadError(f"tensor {details['name']!r} has unsupported type {dtype}") from None


def _port(alias: str, details: dict[str, Any]) -> Port:
    """The tensor, held to its shape signature with a free batch dimension."""
    shape = [int(d) for d in details.get("shape_signature", details["shape"])]
    if shape:
        shape[0] = -1
    return Port(details["name"], _tf_dtype(details), TensorSpec(alias, tuple(shape)))


def _tensor_info(details: dict[str, Any]) -> TensorInfo:
    return TensorInfo(
        name=details["name"],
        dtype=_tf_dtype(details),
        shape=tuple(int(d) for d in details["shape"]),
    )


def _fixed(
    key: str, signature: Signature, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]
) -> Signature:
    """A stored signature, its tensor names checked (or their legacy names, as TF Serving)."""

    def fix(kind: str, infos: Mapping[str, TensorInfo], details: list[dict[str, Any]]):
        names = {d["name"] for d in details}
        fixed = {}
        for alias, info in infos.items():
            name = info.name if info.name in names else legacy_name(info.name)
            if name not in names:
                raise TfliteLoadError(
                    f"signature {key}: Signature {kind} {alias} references an unknown tensor: "
                    f"Unknown tensor '{info.name}'."
                )
            fixed[alias] = TensorInfo(name=name, dtype=info.dtype, shape=info.shape)
        return fixed

    return Signature(
        method_name=signature.method_name,
        inputs=fix("input", signature.inputs, inputs),
        outputs=fix("output", signature.outputs, outputs),
    )


def _read_model(model_file: Path, runtime: Runtime) -> bytes:
    """The model's bytes, checked as the edge runner checks them, and run once in a child
    process (a runtime's abort must not end the server)."""
    try:
        content = read_model(model_file)  # its errors name the file
        probe_model(content, model_file, runtime)
    except ModelError as err:
        raise TfliteLoadError(str(err)) from None
    return content


def _signatures(
    model_file: Path, content: bytes, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]
) -> dict[str, Signature]:
    """The model's stored SignatureDefs, or the one TF Serving derives from its tensors."""
    try:
        stored = read_signature_defs(content)
    except ValueError as err:
        raise TfliteLoadError(
            f"{model_file}: Invalid SignatureDefs found in TfLite model: {err}"
        ) from None
    if stored:
        return {key: _fixed(key, sig, inputs, outputs) for key, sig in stored.items()}
    return {
        DEFAULT_SIGNATURE: Signature(
            method_name=PREDICT_METHOD,
            inputs={legacy_name(d["name"]): _tensor_info(d) for d in inputs},
            outputs={legacy_name(d["name"]): _tensor_info(d) for d in outputs},
        )
    }


class _Slot:
    """A pooled interpreter and the input shapes it is currently allocated for."""

    def __init__(self, interpreter: Any) -> None:
        self.interpreter = interpreter
        self.shapes: dict[int, tuple[int, ...]] = {}


class _Interpreters:
    """Up to `size` interpreters of one model, made as concurrent requests need them."""

    def __init__(self, make: Callable[[], Any], size: int) -> None:
        self._make, self._size = make, size
        self._idle: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._created = 1  # interpreters idle or in use
        self.first = _Slot(make())

    def _grown(self) -> _Slot | None:
        with self._lock:
            if self._created >= self._size:
                return None
            self._created += 1
        try:
            return _Slot(self._make())
        except TfliteLoadError:
            with self._lock:
                self._created -= 1
            raise

    def take(self, deadline: float | None, wait: bool) -> _Slot:
        """An idle interpreter, a new one while under `size`, or (with `wait`) the next one
        back before `deadline`; Busy without `wait`."""
        with contextlib.suppress(queue.Empty):
            return self._idle.get_nowait()
        slot = self._grown()
        if slot is not None:
            return slot
        if not wait:
            raise Busy
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            return self._idle.get(timeout=timeout)
        except queue.Empty:
            raise StatusError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded") from None

    def give_back(self, slot: _Slot) -> None:
        self._idle.put(slot)

    def replace(self) -> None:
        """A fresh interpreter for one that failed (one fewer if none can be made)."""
        with self._lock:
            self._created -= 1
        with contextlib.suppress(TfliteLoadError):
            slot = self._grown()
            if slot is not None:
                self.give_back(slot)

    def close(self) -> None:
        """Drop the idle interpreters (one in use is freed when its request ends)."""
        with contextlib.suppress(queue.Empty):
            while True:
                self._idle.get_nowait()


class TfliteServable(SignatureServable):
    """A loaded `model.tflite`: its TF Serving signatures and a pool of interpreters."""

    runs_inline = True  # a small request's invoke costs less than a thread hand-off

    def __init__(
        self,
        version_dir: Path,
        *,
        num_interpreters: int | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        self.path = Path(version_dir)
        model_file = self.path / TFLITE_FILE
        self._runtime = runtime or select_runtime()
        self._content = _read_model(model_file, self._runtime)
        size = max(1, num_interpreters or os.cpu_count() or 1)
        self._interpreters = _Interpreters(self._new_interpreter, size)
        first = self._interpreters.first.interpreter
        inputs, outputs = first.get_input_details(), first.get_output_details()
        self.signatures = _signatures(model_file, self._content, inputs, outputs)
        by_name = {d["name"]: d for d in (*inputs, *outputs)}
        self.ports: dict[str, Ports] = {
            key: tuple(
                {alias: _port(alias, by_name[info.name]) for alias, info in infos.items()}
                for infos in (sig.inputs, sig.outputs)
            )
            for key, sig in self.signatures.items()
        }
        self._index = {name: d["index"] for name, d in by_name.items()}
        self._interpreters.give_back(self._interpreters.first)

    def _new_interpreter(self) -> Any:
        try:
            interpreter = self._runtime.interpreter_class(
                model_content=self._content, num_threads=1
            )
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise TfliteLoadError(
                f"{self.path / TFLITE_FILE}: {self._runtime} cannot load it: {first_line(err)}"
            ) from None
        return interpreter

    def close(self) -> None:
        self._interpreters.close()

    def run_tensors(
        self,
        feeds: Mapping[str, np.ndarray],
        fetches: Sequence[str],
        rows: int | None,
        deadline: float | None = None,
        wait: bool = True,
    ) -> list[np.ndarray]:
        """One interpreter, taken for all the chunks (Busy at once without `wait`)."""
        by_index = {self._index[name]: value for name, value in feeds.items()}
        indices = [self._index[name] for name in fetches]
        slot = self._interpreters.take(deadline, wait)
        try:
            return validation.run_in_chunks(
                lambda part: _invoke(slot, part, indices), by_index, rows, deadline
            )
        except _Failed:  # a failed resize or allocation may leave the interpreter unusable
            slot = None
            self._interpreters.replace()
            raise
        finally:
            if slot is not None:
                self._interpreters.give_back(slot)


class _Failed(StatusError):
    """INTERNAL: the runtime failed a step (TF Serving's words; the runtime's are its cause)."""


def _invoke(slot: _Slot, feeds: Mapping[int, np.ndarray], fetches: Sequence[int]):
    """One interpreter call (inputs resized to their values' shapes, as TF Serving does)."""
    interpreter, step = slot.interpreter, "resize"
    try:
        resized = False
        for index, value in feeds.items():
            if slot.shapes.get(index) != value.shape:
                interpreter.resize_tensor_input(index, list(value.shape), strict=False)
                slot.shapes[index] = value.shape
                resized = True
        step = "allocate"
        if resized:
            interpreter.allocate_tensors()
        step = "invoke"
        for index, value in feeds.items():
            interpreter.set_tensor(index, np.require(value, requirements="C"))
        interpreter.invoke()
        return [np.asarray(interpreter.get_tensor(index)) for index in fetches]
    except (ValueError, RuntimeError) as err:
        raise _Failed(Code.INTERNAL, _FAILED[step]) from err
