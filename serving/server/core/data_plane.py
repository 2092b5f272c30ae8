"""One request path under both APIs, as TF Serving's ServerCore and *_impl.cc: resolve the
model, version and label a request names, hold that version while it runs, run its servable
where `Placement` says, record metrics, and fail only with canonical status errors.

Every operation is a coroutine on the API's event loop; the servables stay synchronous. An
API describes each request as a `Call` and passes a `respond` function that builds its wire
answer from the plain result inside the request's scope, so an answer that cannot be
encoded fails with the right code and is timed with the request. A request answered
INTERNAL is logged with its traceback, method, model and version. Each of
`DataPlane.observers` (the request log's, `core.request_log`) gets every answered `Call`:
method, wire request, decoded inputs, resolved model spec, plain result, wire response, timing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial, partialmethod
from typing import Any, TypeVar

import numpy as np

from fmnist.serving.server.core.config import ModelConfig
from fmnist.serving.server.core.metrics import Metrics
from fmnist.serving.server.core.placement import Placement
from fmnist.serving.server.core.registry import ServableRegistry
from fmnist.serving.server.servables import examples
from fmnist.serving.server.servables.base import Servable
from fmnist.serving.wire.status import Code, StatusError, internal_bug, invalid_argument

log = logging.getLogger(__name__)
R = TypeVar("R")
SIGNATURE_DEF_FIELD = "signature_def"  # the only metadata field TF Serving supports
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


@dataclass(eq=False, slots=True)
class Call:
    """One request, as its API describes it and the data plane fills in. `request` and
    `response` are the API's own (messages, or REST's JSON document and body); `result` is
    the plain answer between them."""

    api: str  # "grpc" or "rest"
    method: str  # predict, classify, regress, multi_inference, metadata, status, ...
    target: Target
    request: Any = None
    size: int = 0  # the request's bytes: where its work runs
    deadline: float | None = None  # a time.monotonic() value
    model: str = ""  # metrics label: the model named, if it is served
    version: str = ""  # metrics label: the version that answered
    answered: Answered | None = None  # the effective model spec: resolved version, signature
    inputs: Any = None  # the decoded inputs (arrays, or serialized tf.Examples): REST's log
    result: Any = None
    response: Any = None
    code: Code = Code.OK
    started: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0  # from start to answer


class DataPlane:
    """The operations of TF Serving's APIs over a registry of served models."""

    def __init__(
        self,
        registry: ServableRegistry,
        metrics: Metrics,
        method_check: bool = False,
        trace: Trace = no_trace,
        pools: Mapping[str, Any] | None = None,
    ):
        self.registry = registry
        self.metrics = metrics
        self.method_check = method_check  # --enable_signature_method_name_check
        self.trace = trace  # TensorFlow's TraceMe spans while a profile is captured
        self.placement = Placement(pools)  # the APIs' thread pools, by API name
        self.observers: list[Callable[[Call], Any]] = []

    # --- operations -------------------------------------------------------------------

    async def predict(
        self,
        call: Call,
        signature_name: str,
        inputs: Mapping[str, np.ndarray] | Callable[[Servable], Mapping[str, np.ndarray]],
        output_filter: Sequence[str],
        respond: Callable[[Answered, dict[str, np.ndarray]], R],
    ) -> R:
        """Predict of arrays by alias, or of a function of the servable that decodes them."""

        async def run(servable: Servable) -> tuple[str, dict[str, np.ndarray]]:
            given = inputs
            if callable(inputs):
                given = await self.placement.request_work(call, partial(inputs, servable))
            call.inputs = given
            return await self.placement.predict(
                call, servable, signature_name, given, output_filter
            )

        return await self._serve(call, self._on_version(call, call.target, run, respond))

    async def _examples(
        self,
        method: str,
        call: Call,
        signature_name: str,
        given: Any,
        respond: Callable[[Answered, Any], R],
    ) -> R:
        """Classify or Regress of `given`: an `Input` message, or a function giving them
        serialized (REST's JSON); `respond` gets the result message."""
        serialize = given if callable(given) else partial(examples.serialized_examples, given)

        async def run(servable: Servable) -> tuple[str, Any]:
            serialized = call.inputs = await self.placement.request_work(call, serialize)
            task = getattr(servable, method)
            work = partial(
                task, signature_name, serialized, self.method_check, deadline=call.deadline
            )
            return await self.placement.on_pool(call, work)

        return await self._serve(call, self._on_version(call, call.target, run, respond))

    classify = partialmethod(_examples, "classify")
    regress = partialmethod(_examples, "regress")

    async def multi_inference(
        self, call: Call, respond: Callable[[Answered, list[tuple[str, Any]]], R]
    ) -> R:
        """A MultiInferenceRequest (`call.request`) on the version its first task names;
        `respond` gets (signature, result) for each task."""

        async def checked() -> R:
            tasks, spec = examples.multi_inference_tasks(call.request)

            async def run(servable: Servable) -> tuple[None, list[tuple[str, Any]]]:
                given = partial(examples.serialized_examples, call.request.input)
                serialized = await self.placement.request_work(call, given)
                work = partial(servable.multi_inference, tasks, serialized, deadline=call.deadline)
                return None, await self.placement.on_pool(call, work)

            return await self._on_version(call, target_of(spec), run, respond)

        return await self._serve(call, checked())

    async def metadata(
        self, call: Call, fields: Sequence[str], respond: Callable[[Answered, Any], R]
    ) -> R:
        """GetModelMetadata: `signature_def` is the only field (checked before the model)."""

        async def checked() -> R:
            if not fields:
                raise invalid_argument(
                    "GetModelMetadataRequest must specify at least one metadata_field"
                )
            for name in fields:
                if name != SIGNATURE_DEF_FIELD:
                    raise invalid_argument(f"Metadata field {name} is not supported")
            return await self._on_version(call, call.target, _signature_defs, respond)

        return await self._serve(call, checked())

    async def status(self, call: Call, respond: Callable[[list[Any]], R]) -> R:
        """The model's version states; as in TF Serving, a label does not narrow them."""

        async def answer() -> R:
            call.result = self.registry.status(call.target.model, call.target.version)
            return respond(call.result)

        return await self._serve(call, answer())

    async def reload(self, call: Call, models: tuple[ModelConfig, ...]) -> None:
        """Serve `models` from now on (returns once the new ones are loaded)."""
        await self._serve(call, self.placement.on_pool(call, partial(self.registry.reload, models)))

    def refused(self, call: Call, error: StatusError) -> None:
        """Count a request its API refused before any operation (a malformed URL or body)."""
        call.code = error.code
        self._label(call)
        self.metrics.finish(call)

    # --- the request scope ----------------------------------------------------------------

    def _label(self, call: Call) -> None:
        call.model = call.target.model if call.target.model in self.registry.managers else ""

    async def _on_version(
        self,
        call: Call,
        target: Target,
        run: Callable[[Servable], Awaitable[tuple[str | None, Any]]],
        respond: Callable[..., R],
    ) -> R:
        """Hold the target's version while `run(servable)` gives (signature used, plain
        result); then `respond` builds the API's answer from them."""
        with self.registry.acquire(target.model, target.version, target.label) as held:
            call.version = str(held.version)
            name, call.result = await run(held.servable)
        call.answered = Answered(held.name, held.version, name)
        return await self.placement.request_work(call, partial(respond, call.answered, call.result))

    async def _serve(self, call: Call, work: Awaitable[R]) -> R:
        """One request, metered, traced and observed; anything but a StatusError is a bug,
        answered INTERNAL and logged with its traceback."""
        self._label(call)
        try:
            with self.trace(f"{call.api}.{call.method}", model=call.model):
                call.response = await work
            return call.response
        except StatusError as err:
            call.code = err.code
            if err.code == Code.INTERNAL:
                _log_internal(call, err)
            raise
        except asyncio.CancelledError:  # the client went away while it waited
            call.code = Code.CANCELLED
            raise
        except Exception as err:
            call.code = Code.INTERNAL
            _log_internal(call, err)
            raise internal_bug() from None
        finally:
            call.seconds = time.perf_counter() - call.started
            self.metrics.finish(call)
            for observe in self.observers:
                try:
                    observe(call)
                except Exception:
                    log.exception("a request observer failed")


async def _signature_defs(servable: Servable) -> tuple[None, Any]:
    return None, servable.metadata()


def _log_internal(call: Call, error: BaseException) -> None:
    context = {"api": call.api, "method": call.method, "model": call.model}
    context["version"] = call.version
    log.error(
        "%s %s of model %s version %s answered INTERNAL: %s",
        *context.values(),
        error,
        exc_info=error,
        extra=context,
    )


def target_of(spec: Any) -> Target:
    """The Target of a ModelSpec message (version or label, if it names one)."""
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return Target(spec.name, version=spec.version.value)
    if choice == "version_label":
        return Target(spec.name, label=spec.version_label)
    return Target(spec.name)
