"""The servable interface, and what the SavedModel and TFLite servables share.

`Servable` is what the data plane holds for one model version (TF Serving's servable): its
signatures as plain data, Predict, the tf.Example APIs (Classify, Regress, MultiInference),
its SignatureDefs for GetModelMetadata, and `close`. `SignatureServable` implements the
tf.Example APIs once, for any servable that can run tensors by name, which the SavedModel
(graph tensors) and the TFLite model (interpreter tensors) both can.
"""

from __future__ import annotations

import abc
import asyncio
import functools
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from typing import Protocol

import numpy as np

from fmnist.serving.server.servables import examples
from fmnist.serving.server.servables.examples import ExampleResult
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.signature import (
    CLASSIFY_METHOD,
    REGRESS_METHOD,
    Signature,
    TensorInfo,
    to_signature_def,
)
from fmnist.serving.wire.status import invalid_argument

Outputs = dict[str, np.ndarray]


class Servable(Protocol):
    """One loaded model version, as the data plane uses it."""

    @property
    def signatures(self) -> Mapping[str, Signature]:
        """Signature key -> its inputs and outputs, as plain data."""
        ...

    def predict(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        deadline: float | None = None,
    ) -> tuple[str, Outputs]:
        """Run a signature on named inputs (validated first); the signature used and outputs.
        `deadline` is a `time.monotonic()` value: past it, DEADLINE_EXCEEDED."""
        ...

    async def predict_async(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        deadline: float | None = None,
        executor: Executor | None = None,
    ) -> tuple[str, Outputs]:
        """`predict` for a small request on an event loop: it waits without holding the
        loop (a run on `executor`, a batch queue), or runs there if that is quicker."""
        ...

    def classify(
        self,
        signature_name: str,
        serialized: Sequence[bytes],
        check_method: bool = False,
        *,
        deadline: float | None = None,
    ) -> tuple[str, pb.ClassificationResult]:
        """Serialized tf.Examples through a classify signature (TF Serving's checks)."""
        ...

    def regress(
        self,
        signature_name: str,
        serialized: Sequence[bytes],
        check_method: bool = False,
        *,
        deadline: float | None = None,
    ) -> tuple[str, pb.RegressionResult]: ...

    def multi_inference(
        self,
        tasks: Sequence[tuple[str, str]],
        serialized: Sequence[bytes],
        *,
        deadline: float | None = None,
    ) -> list[tuple[str, ExampleResult]]:
        """(signature name, method name) tasks over the same examples; a result per task."""
        ...

    def metadata(self) -> pb.SignatureDefMap:
        """The SignatureDefs, as GetModelMetadata answers them."""
        ...

    def close(self) -> None: ...


class SignatureServable(abc.ABC):
    """A servable that runs tensors by name; the tf.Example APIs and metadata come from here."""

    signatures: Mapping[str, Signature]

    @abc.abstractmethod
    def run_tensors(
        self,
        feeds: Mapping[str, np.ndarray],
        fetches: Sequence[str],
        rows: int | None,
        deadline: float | None,
    ) -> list[np.ndarray]:
        """Tensor name -> value in, the fetched tensors' values out; `rows` is a batch size
        every feed shares, to run in chunks along (None: run whole)."""

    @abc.abstractmethod
    def predict(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        deadline: float | None = None,
    ) -> tuple[str, Outputs]: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    async def predict_async(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        deadline: float | None = None,
        executor: Executor | None = None,
    ) -> tuple[str, Outputs]:
        """`predict` on `executor`, so that the event loop goes on meanwhile."""
        run = functools.partial(
            self.predict, signature_name, inputs, output_filter, deadline=deadline
        )
        return await asyncio.get_running_loop().run_in_executor(executor, run)

    def metadata(self) -> pb.SignatureDefMap:
        answer = pb.SignatureDefMap()
        for name, signature in self.signatures.items():
            answer.signature_def[name].CopyFrom(to_signature_def(signature))
        return answer

    def classify(
        self,
        signature_name: str,
        serialized: Sequence[bytes],
        check_method: bool = False,
        *,
        deadline: float | None = None,
    ) -> tuple[str, pb.ClassificationResult]:
        return self._example_task(
            signature_name, CLASSIFY_METHOD, serialized, check_method, deadline
        )

    def regress(
        self,
        signature_name: str,
        serialized: Sequence[bytes],
        check_method: bool = False,
        *,
        deadline: float | None = None,
    ) -> tuple[str, pb.RegressionResult]:
        return self._example_task(
            signature_name, REGRESS_METHOD, serialized, check_method, deadline
        )

    def _example_task(
        self,
        signature_name: str,
        method: str,
        serialized: Sequence[bytes],
        check_method: bool,
        deadline: float | None,
    ) -> tuple[str, ExampleResult]:
        name, signature = examples.example_signature(
            self.signatures, signature_name, method, check_method
        )
        aliases = examples.result_aliases(method, signature)
        outputs = [signature.outputs[a] for a in aliases]
        feeds = [signature.inputs["inputs"].name]
        values = self._run_examples(feeds, outputs, serialized, deadline)
        by_alias = dict(zip(aliases, values, strict=True))
        return name, examples.build_result(method, by_alias, len(serialized))

    def multi_inference(
        self,
        tasks: Sequence[tuple[str, str]],
        serialized: Sequence[bytes],
        *,
        deadline: float | None = None,
    ) -> list[tuple[str, ExampleResult]]:
        """Every task's signature in one run over the same examples, as current TF Serving
        does it (multi_inference.cc): the examples go to the input tensor of every task
        (TF1 signatures share one, TF2 ones each have their own), and the union of their
        outputs is fetched once."""
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
        """The examples as a string vector fed to every input tensor; chunked along it unless
        an output is declared without a batch dimension."""
        if not serialized:
            raise invalid_argument("Input is empty.")
        batch = np.empty(len(serialized), dtype=object)
        batch[:] = list(serialized)
        batched = all(o.shape is None or (len(o.shape) >= 1 and o.shape[0] == -1) for o in outputs)
        rows = len(serialized) if batched else None
        feeds = dict.fromkeys(input_names, batch)
        return self.run_tensors(feeds, [o.name for o in outputs], rows, deadline)
