"""One TFLite version, served as TF Serving's TfLiteSession serves `<version>/model.tflite`.

No TensorFlow: the interpreter comes from `fmnist.edge.runtime` (ai-edge-litert, else
tflite-runtime), so a Raspberry Pi can serve the int8 model. As in TF Serving
(servables/tensorflow/tflite_session.cc), a model without SignatureDef metadata gets one
`serving_default` predict signature built from its input and output tensors: each alias
is the tensor name without its `:N` suffix, each shape the tensor's shape as loaded (batch
1, not -1); a model that carries SignatureDef metadata is served with those instead
(`tflite_signatures`). TF Serving feeds raw tensors of the model's own types (uint8/int8
for a quantized model) and resizes the inputs to each request's shape; here every input is
also checked against the model's shape signature first (any batch size, fixed other
dims), and large batches run in chunks. A pool of interpreters (one thread each, as TF
Serving's `--num_tflite_pools`, default one per CPU) serves concurrent requests.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.edge.model_check import check_tflite_structure
from fmnist.edge.model_probe import ModelCrashed, check_in_child
from fmnist.edge.runtime import Runtime, select_runtime
from fmnist.serving.server.servables import validation
from fmnist.serving.server.servables.base import SignatureServable
from fmnist.serving.server.servables.tflite_signatures import read_signature_defs
from fmnist.serving.server.servables.validation import TensorSpec
from fmnist.serving.wire import dtypes
from fmnist.serving.wire.signature import DEFAULT_SIGNATURE, PREDICT_METHOD, Signature, TensorInfo
from fmnist.serving.wire.status import Code, StatusError, failed_precondition

TFLITE_FILE = "model.tflite"  # TF Serving's name, read with --prefer_tflite_model


class TfliteLoadError(Exception):
    """A version directory's model.tflite cannot be served."""


@dataclass(frozen=True)
class _Port:
    """One model input or output: interpreter tensor index, TF dtype, and the shape requests
    are held to (the shape signature with a free batch dimension)."""

    index: int
    dtype: int
    spec: TensorSpec


def legacy_name(tensor_name: str) -> str:
    """TF Serving's alias for a tensor: its name up to the first ':' (`x:0` -> `x`)."""
    return tensor_name.split(":", 1)[0]


def _tf_dtype(details: dict[str, Any]) -> int:
    dtype = np.dtype(details["dtype"])  # string tensors come as numpy bytes_: DT_STRING
    try:
        return dtypes.dtype_of(np.empty(0, dtype))
    except StatusError:
        raise TfliteLoadError(f"tensor {details['name']!r} has unsupported type {dtype}") from None


def _port(alias: str, details: dict[str, Any]) -> _Port:
    shape = [int(d) for d in details.get("shape_signature", details["shape"])]
    if shape:
        shape[0] = -1  # TF Serving resizes every input to the request; dim 0 is the batch
    return _Port(details["index"], _tf_dtype(details), TensorSpec(alias, tuple(shape)))


def _tensor_info(details: dict[str, Any]) -> TensorInfo:
    return TensorInfo(
        name=details["name"],
        dtype=_tf_dtype(details),
        shape=tuple(int(d) for d in details["shape"]),
    )


def _fixed(
    key: str, signature: Signature, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]
) -> Signature:
    """A stored signature with its tensor names checked against the model's, falling back
    to the legacy name without `:N` as TF Serving does (old converters dropped it)."""

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


def _ports(infos: Mapping[str, TensorInfo], details: list[dict[str, Any]]) -> dict[str, _Port]:
    by_name = {d["name"]: d for d in details}
    return {alias: _port(alias, by_name[info.name]) for alias, info in infos.items()}


class _Slot:
    """A pooled interpreter and the input shapes it is currently allocated for."""

    def __init__(self, interpreter: Any) -> None:
        self.interpreter = interpreter
        self.shapes: dict[int, tuple[int, ...]] = {}


class TfliteServable(SignatureServable):
    """A loaded `model.tflite`: its TF Serving signatures and a pool of interpreters."""

    def __init__(
        self,
        version_dir: Path,
        *,
        num_interpreters: int | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        self.path = Path(version_dir)
        model_file = self.path / TFLITE_FILE
        try:
            self._content = model_file.read_bytes()
        except OSError as err:
            raise TfliteLoadError(f"cannot read {model_file}: {err.strerror or err}") from None
        if len(self._content) < 8 or self._content[4:8] != b"TFL3":
            raise TfliteLoadError(f"{model_file}: not a TFLite model (no TFL3 identifier)")
        try:
            check_tflite_structure(self._content)  # a truncated file must not crash the server
        except ValueError as err:
            raise TfliteLoadError(f"{model_file}: truncated or corrupt: {err}") from None
        self._runtime = runtime or select_runtime()
        try:
            check_in_child(self._content, self._runtime.name)  # an abort must not end us
        except ModelCrashed as err:
            raise TfliteLoadError(f"{model_file}: {err}") from None
        self._size = max(1, num_interpreters or os.cpu_count() or 1)
        self._pool: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        self._lock = threading.Lock()
        first = self._new_slot()
        self._created = 1  # interpreters in the pool or in use
        inputs = first.interpreter.get_input_details()
        outputs = first.interpreter.get_output_details()
        try:
            stored = read_signature_defs(self._content)
        except ValueError as err:
            raise TfliteLoadError(
                f"{model_file}: Invalid SignatureDefs found in TfLite model: {err}"
            ) from None
        if stored:
            self.signatures = {
                key: _fixed(key, sig, inputs, outputs) for key, sig in stored.items()
            }
        else:  # TF Serving's generated signature
            self.signatures = {
                DEFAULT_SIGNATURE: Signature(
                    method_name=PREDICT_METHOD,
                    inputs={legacy_name(d["name"]): _tensor_info(d) for d in inputs},
                    outputs={legacy_name(d["name"]): _tensor_info(d) for d in outputs},
                )
            }
        # signature key -> (input alias -> port, output alias -> port)
        self._ports = {
            key: (_ports(sig.inputs, inputs), _ports(sig.outputs, outputs))
            for key, sig in self.signatures.items()
        }
        self._index = {d["name"]: d["index"] for d in (*inputs, *outputs)}  # by tensor name
        self._pool.put(first)

    # --- interpreters ------------------------------------------------------------------

    def _new_slot(self) -> _Slot:
        try:
            interpreter = self._runtime.interpreter_class(
                model_content=self._content, num_threads=1
            )
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise TfliteLoadError(
                f"{self.path / TFLITE_FILE}: {self._runtime} cannot load it: {_first_line(err)}"
            ) from None
        return _Slot(interpreter)

    def _acquire(self, deadline: float | None) -> _Slot:
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            grow = self._created < self._size
            if grow:
                self._created += 1
        if grow:
            try:
                return self._new_slot()
            except TfliteLoadError:
                with self._lock:
                    self._created -= 1
                raise
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            return self._pool.get(timeout=timeout)
        except queue.Empty:
            raise StatusError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded") from None

    def close(self) -> None:
        """Drop the idle interpreters (one in use is freed when its request ends)."""
        while True:
            try:
                self._pool.get_nowait()
            except queue.Empty:
                return

    # --- running -----------------------------------------------------------------------

    def run(
        self,
        feeds: Mapping[int, np.ndarray],
        fetches: Sequence[int],
        deadline: float | None = None,
    ) -> list[np.ndarray]:
        """One interpreter call: tensor index -> value in (inputs resized to their values'
        shapes, as TF Serving does), copies of the fetched output tensors out. Waiting for
        a free interpreter ends at `deadline`."""
        slot = self._acquire(deadline)
        try:
            interpreter = slot.interpreter
            step = "resize"
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
            slot = self._replace()  # a failed resize or allocation may leave it unusable
            raise StatusError(Code.INTERNAL, _failure(step, err)) from None
        finally:
            if slot is not None:
                self._pool.put(slot)

    def run_tensors(
        self,
        feeds: Mapping[str, np.ndarray],
        fetches: Sequence[str],
        rows: int | None,
        deadline: float | None = None,
    ) -> list[np.ndarray]:
        """`run` by tensor name, in chunks along `rows` (see `validation.run_in_chunks`)."""
        by_index = {self._index[name]: value for name, value in feeds.items()}
        indices = [self._index[name] for name in fetches]
        return validation.run_in_chunks(
            lambda part: self.run(part, indices, deadline), by_index, rows, deadline
        )

    async def predict_async(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        deadline: float | None = None,
        executor: Executor | None = None,
    ) -> tuple[str, dict[str, np.ndarray]]:
        """Run on the event loop when an interpreter is free: a small request's invoke is
        quicker than handing it to a thread and back (else as `predict`, on `executor`)."""
        if self._pool.qsize() or self._created < self._size:
            return self.predict(signature_name, inputs, output_filter, deadline=deadline)
        return await super().predict_async(
            signature_name, inputs, output_filter, deadline=deadline, executor=executor
        )

    def _replace(self) -> _Slot | None:
        """A fresh interpreter for one that failed, or None (one fewer) if none can be made."""
        try:
            return self._new_slot()
        except TfliteLoadError:
            with self._lock:
                self._created -= 1
            return None

    def predict(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        deadline: float | None = None,
    ) -> tuple[str, dict[str, np.ndarray]]:
        """Run the signature on named inputs; returns the effective signature name and
        outputs. Inputs are checked first; batches run in chunks of
        `validation.chunk_rows` rows, with `deadline` (`time.monotonic()`) checked per chunk."""
        name = signature_name or DEFAULT_SIGNATURE
        signature = self.signatures.get(name)
        if signature is None:
            raise failed_precondition(f'Serving signature key "{name}" not found.')
        input_ports, output_ports = self._ports[name]
        feeds = self._feeds(name, input_ports, inputs)
        aliases = validation.output_aliases(signature.outputs, output_filter)
        fetches = [output_ports[alias].index for alias in aliases]
        specs = {alias: input_ports[alias].spec for alias in inputs}
        rows = validation.batch_rows(specs, {a: v.shape for a, v in inputs.items()})
        values = validation.run_in_chunks(
            lambda part: self.run(part, fetches, deadline), feeds, rows, deadline
        )
        return name, dict(zip(aliases, values, strict=True))

    @staticmethod
    def _feeds(
        signature_name: str, expected: Mapping[str, _Port], inputs: Mapping[str, np.ndarray]
    ) -> dict[int, Any]:
        """Interpreter index -> value, after the names, dtypes and shapes are checked."""
        validation.check_input_names(inputs, expected)
        feeds = {}
        for alias, port in expected.items():
            value = np.asarray(inputs[alias])
            validation.check_dtype(alias, dtypes.dtype_of(value), port.dtype)
            validation.check_shape(signature_name, port.spec, value.shape)
            feeds[port.index] = value
        return feeds


def _first_line(err: BaseException, limit: int = 300) -> str:
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _failure(step: str, err: BaseException) -> str:
    """TF Serving's TfLiteSession wording for a failed step, plus the runtime's reason."""
    what = {
        "resize": "Failed to resize input tensor",
        "allocate": "Failed to allocate tensors",
        "invoke": "Failed to invoke TfLite interpreter",
    }[step]
    return f"{what}: {_first_line(err)}"
