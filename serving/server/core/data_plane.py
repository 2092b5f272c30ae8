"""One request path under both APIs: resolve the model, version and label a request names,
hold that version while it runs, run its servable, record metrics, and fail only with
canonical status errors (TF Serving's ServerCore and *_impl.cc do this for its APIs).

The gRPC and REST APIs translate their wire formats into these calls and back. Each call
takes a `respond` function that builds the API's answer inside the request's scope, so an
answer that cannot be encoded fails with the right code and is timed with the request.
`predict_async` is Predict for a small request on an event loop: the servable's own async
form waits without a thread (a batch queue) or runs on `executor`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from fmnist.serving.server.core.config import ModelConfig
from fmnist.serving.server.core.metrics import Metrics, RequestRecord
from fmnist.serving.server.core.registry import ServableRegistry, ServableVersion, VersionStatus
from fmnist.serving.server.servables import examples
from fmnist.serving.server.servables.base import Outputs, Servable
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.status import Code, StatusError, invalid_argument

R = TypeVar("R")
SIGNATURE_DEF_FIELD = "signature_def"  # the only metadata field TF Serving supports
# Predict inputs: arrays by alias, or a function of the servable that decodes them (REST
# reads its JSON by the dtypes of the signature it names).
Inputs = Mapping[str, np.ndarray] | Callable[[Servable], Mapping[str, np.ndarray]]
# A span around each request for a profiler's trace: (name, model=...) -> context manager.
Trace = Callable[..., AbstractContextManager]


def no_trace(_name: str, **_details: Any) -> AbstractContextManager:
    return nullcontext()


@dataclass(frozen=True)
class Target:
    """What a request names: a model, and a version or a label (neither: the latest)."""

    model: str
    version: int | None = None
    label: str | None = None


@dataclass(frozen=True)
class Answered:
    """Who answered a request: model, version, and the signature that ran (if one did)."""

    model: str
    version: int
    signature: str | None = None


class DataPlane:
    """The operations of TF Serving's APIs over a registry of served models."""

    def __init__(
        self,
        registry: ServableRegistry,
        metrics: Metrics,
        method_check: bool = False,
        trace: Trace = no_trace,
        executor: Executor | None = None,
    ):
        self.registry = registry
        self.metrics = metrics
        self.method_check = method_check  # --enable_signature_method_name_check
        self.trace = trace  # TensorFlow's TraceMe spans while a profile is captured
        self.executor = executor  # where predict_async runs models that block

    # --- operations -------------------------------------------------------------------

    def predict(
        self,
        api: str,
        target: Target,
        signature_name: str,
        inputs: Inputs,
        output_filter: Sequence[str] = (),
        *,
        deadline: float | None = None,
        respond: Callable[[Answered, Outputs], R],
    ) -> R:
        def run(record: RequestRecord) -> R:
            with self._hold(target, record) as held:
                given = inputs(held.servable) if callable(inputs) else inputs
                name, outputs = held.servable.predict(
                    signature_name, given, output_filter, deadline=deadline
                )
                del given  # the request's arrays are not needed while the answer is built
            return respond(Answered(held.name, held.version, name), outputs)

        return self._serve(api, "predict", target.model, run)

    async def predict_async(
        self,
        api: str,
        target: Target,
        signature_name: str,
        inputs: Inputs,
        output_filter: Sequence[str] = (),
        *,
        deadline: float | None = None,
        respond: Callable[[Answered, Outputs], R],
    ) -> R:
        """`predict` on an event loop (see the module docstring)."""
        with self._scope(api, "predict", target.model) as record:
            with self._hold(target, record) as held:
                given = inputs(held.servable) if callable(inputs) else inputs
                name, outputs = await held.servable.predict_async(
                    signature_name, given, output_filter, deadline=deadline, executor=self.executor
                )
                del given
            return respond(Answered(held.name, held.version, name), outputs)

    def classify(
        self,
        api: str,
        target: Target,
        signature_name: str,
        serialized: Sequence[bytes] | Callable[[], Sequence[bytes]],
        *,
        deadline: float | None = None,
        respond: Callable[[Answered, pb.ClassificationResult], R],
    ) -> R:
        """Serialized tf.Examples (or a function giving them once the version is held)."""
        return self._examples(
            api, "classify", target, signature_name, serialized, deadline, respond
        )

    def regress(
        self,
        api: str,
        target: Target,
        signature_name: str,
        serialized: Sequence[bytes] | Callable[[], Sequence[bytes]],
        *,
        deadline: float | None = None,
        respond: Callable[[Answered, pb.RegressionResult], R],
    ) -> R:
        return self._examples(api, "regress", target, signature_name, serialized, deadline, respond)

    def multi_inference(
        self, api: str, request: Any, *, deadline: float | None = None
    ) -> pb.MultiInferenceResponse:
        """A MultiInferenceRequest: its tasks checked, then run on the version the first
        task's ModelSpec names."""
        model = request.tasks[0].model_spec.name if request.tasks else ""

        def run(record: RequestRecord) -> pb.MultiInferenceResponse:
            spec = examples.first_task_spec(request)
            examples.check_tasks(request)
            with self._hold(target_of(spec), record) as held:
                return examples.run_multi_inference(held.servable, request, held.version, deadline)

        return self._serve(api, "multi_inference", model, run)

    def metadata(
        self,
        api: str,
        target: Target,
        fields: Sequence[str],
        *,
        respond: Callable[[Answered, pb.SignatureDefMap], R],
    ) -> R:
        """GetModelMetadata: `signature_def` is the only field (checked before the model)."""

        def run(record: RequestRecord) -> R:
            if not fields:
                raise invalid_argument(
                    "GetModelMetadataRequest must specify at least one metadata_field"
                )
            for field in fields:
                if field != SIGNATURE_DEF_FIELD:
                    raise invalid_argument(f"Metadata field {field} is not supported")
            with self._hold(target, record) as held:
                signatures = held.servable.metadata()
            return respond(Answered(held.name, held.version), signatures)

        return self._serve(api, "metadata", target.model, run)

    def status(self, api: str, model: str, version: int | None = None) -> list[VersionStatus]:
        """The model's version states; as in TF Serving, a label does not narrow them."""
        return self._serve(api, "status", model, lambda _: self.registry.status(model, version))

    def reload(self, api: str, models: tuple[ModelConfig, ...]) -> None:
        """Serve `models` from now on (blocks until the new ones are loaded)."""
        self._serve(api, "reload_config", "", lambda _: self.registry.reload(models))

    def refused(self, api: str, method: str, model: str, error: StatusError) -> None:
        """Count a request its API refused before it reached an operation (a malformed URL
        or body), so the metrics see every request."""
        record = self.metrics.start(api, method)
        if model in self.registry.managers:
            record.model = model
        self.metrics.finish(record, error.code.name)

    # --- the request scope ----------------------------------------------------------------

    def _examples(self, api, method, target, signature_name, serialized, deadline, respond):
        def run(record: RequestRecord):
            with self._hold(target, record) as held:
                given = serialized() if callable(serialized) else serialized
                run_method = getattr(held.servable, method)  # classify or regress
                name, result = run_method(
                    signature_name, given, self.method_check, deadline=deadline
                )
            return respond(Answered(held.name, held.version, name), result)

        return self._serve(api, method, target.model, run)

    def _serve(self, api: str, method: str, model: str, run: Callable[[RequestRecord], R]) -> R:
        with self._scope(api, method, model) as record:
            return run(record)

    @contextmanager
    def _scope(self, api: str, method: str, model: str) -> Iterator[RequestRecord]:
        """One request, metered and traced; anything but a StatusError is a bug, reported
        INTERNAL to the client (one request's bug must not take the server down)."""
        record = self.metrics.start(api, method)
        if model in self.registry.managers:
            record.model = model
        try:
            with self.trace(f"{api}.{method}", model=model):
                yield record
        except StatusError as err:
            self.metrics.finish(record, err.code.name)
            raise
        except asyncio.CancelledError:  # the client went away while it waited
            self.metrics.finish(record, Code.CANCELLED.name)
            raise
        except Exception as err:
            self.metrics.finish(record, Code.INTERNAL.name)
            raise StatusError(Code.INTERNAL, f"Internal error: {err}") from None
        self.metrics.finish(record, Code.OK.name)

    @contextmanager
    def _hold(self, target: Target, record: RequestRecord) -> Iterator[ServableVersion]:
        """The version the target names, held until the block ends (a version being retired
        finishes the requests holding it)."""
        with self.registry.acquire(target.model, target.version, target.label) as held:
            record.version = str(held.version)
            yield held


def target_of(spec: Any) -> Target:
    """The Target of a ModelSpec message (version or label, if it names one)."""
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return Target(spec.name, version=spec.version.value)
    if choice == "version_label":
        return Target(spec.name, label=spec.version_label)
    return Target(spec.name)
