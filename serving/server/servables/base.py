"""The servable interface (`Servable`: one loaded model version, synchronous), and
`SignatureServable`: Predict and the tf.Example APIs, written once for the SavedModel and
TFLite servables, which both run tensors by name.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fmnist.serving.server.servables import examples, validation
from fmnist.serving.server.servables.examples import ExampleResult
from fmnist.serving.server.servables.validation import TensorSpec
from fmnist.serving.wire import dtypes
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.signature import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    REGRESS_METHOD,
    Signature,
    TensorInfo,
    to_signature_def,
)
from fmnist.serving.wire.status import failed_precondition, invalid_argument

Outputs = dict[str, np.ndarray]


class Busy(Exception):
    """A call made with `wait=False` would have to wait (for a free TFLite interpreter)."""


class Servable(Protocol):
    """One loaded model version, as the data plane uses it (see `SignatureServable`).
    `wait=False`: raise Busy rather than wait for a shared part (a TFLite interpreter)."""

    signatures: Mapping[str, Signature]  # signature key -> its inputs and outputs
    runs_inline: bool  # a small Predict costs less than a thread hand-off (with wait=False)

    def predict(self, signature_name, inputs, output_filter=(), *, deadline=None, wait=True): ...
    def classify(self, signature_name, serialized, check_method=False, *, deadline=None): ...
    def regress(self, signature_name, serialized, check_method=False, *, deadline=None): ...
    def multi_inference(self, tasks, serialized, *, deadline=None): ...
    def metadata(self) -> pb.SignatureDefMap: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Port:
    """A signature tensor as fed or fetched: tensor name, DataType, the shape held to."""

    name: str
    dtype: int
    spec: TensorSpec


Ports = tuple[dict[str, Port], dict[str, Port]]  # (inputs, outputs) of a signature, by alias


class SignatureServable(abc.ABC):
    """A servable that runs tensors by name: Predict, the tf.Example APIs and metadata."""

    signatures: Mapping[str, Signature]
    defaults: Mapping[str, Mapping[str, np.ndarray]] = {}  # signature key -> input defaults
    runs_inline = False

    @abc.abstractmethod
    def run_tensors(
        self,
        feeds: Mapping[str, np.ndarray],
        fetches: Sequence[str],
        rows: int | None,
        deadline: float | None,
        wait: bool = True,
    ) -> list[np.ndarray]:
        """Tensor name -> value in, fetched values out (`validation.run_in_chunks`)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @functools.cached_property
    def ports(self) -> dict[str, Ports]:
        """Each signature's (inputs, outputs) as fed and fetched."""
        return {
            key: tuple(
                {a: Port(i.name, i.dtype, TensorSpec(a, i.shape)) for a, i in t.items()}
                for t in (s.inputs, s.outputs)
            )
            for key, s in self.signatures.items()
        }

    def predict(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        deadline: float | None = None,
        wait: bool = True,
    ) -> tuple[str, Outputs]:
        """Inputs are checked before anything runs; a zero-row batch answers empty outputs
        of the declared shapes without running (as TF Serving's SavedModel does)."""
        name = signature_name or DEFAULT_SIGNATURE
        if name not in self.ports:
            raise failed_precondition(f'Serving signature key "{name}" not found.')
        ins, outs = self.ports[name]
        feeds = self._feeds(name, ins, inputs)
        aliases = validation.output_aliases(outs, output_filter)
        specs = {alias: port.spec for alias, port in ins.items()}
        shapes = {alias: feeds[port.name].shape for alias, port in ins.items()}
        rows = validation.batch_rows(specs, shapes, [outs[a].spec for a in aliases])
        if rows == 0 and all(validation.conforms(specs[a], shapes[a]) for a in specs):
            empty = _zero_rows({alias: outs[alias] for alias in aliases})
            if empty is not None:
                return name, empty
        values = self.run_tensors(feeds, [outs[a].name for a in aliases], rows, deadline, wait)
        return name, dict(zip(aliases, values, strict=True))

    def _feeds(
        self, signature_name: str, ports: Mapping[str, Port], inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Tensor name -> value for the signature's inputs, checked; defaults fill gaps."""
        defaults = self.defaults.get(signature_name, {})
        validation.check_input_names(inputs, ports, defaults)
        feeds = {}
        for alias, port in ports.items():
            value = np.asarray(inputs[alias]) if alias in inputs else defaults[alias]
            validation.check_dtype(alias, dtypes.dtype_of(value), port.dtype)
            if alias in inputs:  # a default is the model's own value, fed as it is
                validation.check_shape(signature_name, port.spec, value.shape)
            feeds[port.name] = value
        return feeds

    def metadata(self) -> pb.SignatureDefMap:
        answer = pb.SignatureDefMap()
        for name, signature in self.signatures.items():
            answer.signature_def[name].CopyFrom(to_signature_def(signature))
        return answer

    def _example_task(
        self,
        method: str,
        signature_name: str,
        serialized: Sequence[bytes],
        check_method: bool = False,
        *,
        deadline: float | None = None,
    ) -> tuple[str, ExampleResult]:
        """Classify or Regress: the signature used and its result message."""
        name, signature = examples.example_signature(
            self.signatures, signature_name, method, check_method
        )
        aliases = examples.result_aliases(method, signature)
        outputs = [signature.outputs[a] for a in aliases]
        feeds = [signature.inputs["inputs"].name]
        values = self._run_examples(feeds, outputs, serialized, deadline)
        by_alias = dict(zip(aliases, values, strict=True))
        return name, examples.build_result(method, by_alias, len(serialized))

    classify = functools.partialmethod(_example_task, CLASSIFY_METHOD)
    regress = functools.partialmethod(_example_task, REGRESS_METHOD)

    def multi_inference(
        self,
        tasks: Sequence[tuple[str, str]],
        serialized: Sequence[bytes],
        *,
        deadline: float | None = None,
    ) -> list[tuple[str, ExampleResult]]:
        """Every task's signature in one run over the same examples, as multi_inference.cc:
        the examples feed every task's input tensor; the union of outputs is fetched once."""
        checked = examples.check_task_signatures(self.signatures, tasks)
        inputs = sorted({signature.inputs["inputs"].name for _, signature in checked})
        fetches = {info.name: info for _, s in checked for info in s.outputs.values()}
        names = sorted(fetches)
        values = self._run_examples(inputs, [fetches[n] for n in names], serialized, deadline)
        by_tensor = dict(zip(names, values, strict=True))
        results = []
        for (name, signature), (_, method) in zip(checked, tasks, strict=True):
            aliases = examples.result_aliases(method, signature)
            outputs = {a: by_tensor[signature.outputs[a].name] for a in aliases}
            results.append((name, examples.build_result(method, outputs, len(serialized))))
        return results

    def _run_examples(
        self,
        input_names: Sequence[str],
        outputs: Sequence[TensorInfo],
        serialized: Sequence[bytes],
        deadline: float | None,
    ) -> list[np.ndarray]:
        """The examples as a string vector fed to every input tensor."""
        if not serialized:
            raise invalid_argument("Input is empty.")
        batch = np.empty(len(serialized), dtype=object)
        batch[:] = list(serialized)
        batched = all(o.shape is None or (len(o.shape) >= 1 and o.shape[0] == -1) for o in outputs)
        rows = len(serialized) if batched else None
        feeds = dict.fromkeys(input_names, batch)
        return self.run_tensors(feeds, [o.name for o in outputs], rows, deadline)


def _zero_rows(outputs: Mapping[str, Port]) -> Outputs | None:
    """Zero-row outputs when every output's declaration fixes its shape, else None."""
    empty = {}
    for alias, port in outputs.items():
        shape = validation.empty_output_shape(port.spec)
        if shape is None or port.dtype not in dtypes.SUPPORTED_DTYPES:
            return None
        empty[alias] = np.empty(shape, dtype=dtypes.numpy_dtype(port.dtype))
    return empty
