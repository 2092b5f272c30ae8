"""Where each part of a request's work runs, decided here for both APIs (`call`: the data
plane's record of a request, its `api`, `size` and `deadline`):

- request work (parsing, decoding, encoding) inline on the event loop up to `INLINE_BYTES`
  (less than a thread hand-off each way), else on the API's pool;
- a Predict a batching servable can merge: its batch queue, awaited on the loop; a small
  Predict on a servable that runs inline, with an interpreter free right now: the loop;
- every other model call: the API's pool (`--grpc_max_threads`, `--rest_api_num_threads`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import numpy as np

from fmnist.serving.server.servables.base import Busy, Outputs, Servable
from fmnist.serving.server.servables.batching import BatchingServable

T = TypeVar("T")
INLINE_BYTES = 16 << 10  # a request up to this size is parsed, decoded and encoded inline


class Placement:
    """Runs work where the module docstring says; `pools`: the APIs' thread pools by name."""

    def __init__(self, pools: Mapping[str, Executor] | None = None):
        self.pools = dict(pools or {})

    async def request_work(self, call: Any, work: Callable[[], T]) -> T:
        """`work()` inline for a small request, else on the API's pool."""
        return work() if call.size <= INLINE_BYTES else await self.on_pool(call, work)

    async def predict(
        self,
        call: Any,
        servable: Servable,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str],
    ) -> tuple[str, Outputs]:
        """A Predict through the batch queue, inline, or on the API's pool."""
        if isinstance(servable, BatchingServable):
            batched = servable.batched(signature_name, inputs, output_filter, call.deadline)
            if batched is not None:
                return await batched
        run = partial(
            servable.predict, signature_name, inputs, output_filter, deadline=call.deadline
        )
        if call.size <= INLINE_BYTES and servable.runs_inline:
            try:
                return run(wait=False)
            except Busy:
                pass
        return await self.on_pool(call, run)

    async def on_pool(self, call: Any, work: Callable[[], T]) -> T:
        """`work()` on the API's pool; started work ends before this does, even if the caller
        goes away (it may use the version the caller holds)."""
        pool = self.pools.get(call.api)
        if pool is None:
            pool = self.pools[call.api] = ThreadPoolExecutor(4, thread_name_prefix=call.api)
        job = pool.submit(work)
        try:
            return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            await _ended(job)  # (one that has not started is cancelled with the caller)
            raise


async def _ended(job: Future) -> None:
    """Until `job` is done, whatever cancels the waiting task meanwhile."""
    while not job.done():
        try:
            await asyncio.wait((asyncio.wrap_future(job),))
        except asyncio.CancelledError:
            continue
