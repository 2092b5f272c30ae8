"""TF Serving's request batching (`--enable_batching`): Predicts through one `BatchScheduler`
shared by every version, queued by request shape (signature, output filter, input names,
dtypes, every dim but dim 0: other inner dims queue apart, never padded). Requests that
cannot merge run alone; Classify, Regress and MultiInference run unbatched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.serving.server.servables.base import Outputs, Servable
from fmnist.serving.server.servables.batch_scheduler import (
    BatchingConfig,
    BatchObserver,
    BatchScheduler,
    check_config,
)
from fmnist.serving.wire.signature import DEFAULT_SIGNATURE


def with_batching(
    loader: Callable[[Path], Servable], config: BatchingConfig, observe: BatchObserver | None = None
) -> Callable[[Path], Servable]:
    """`loader` whose servables batch concurrent Predicts (`config` checked at start-up)."""
    check_config(config)
    scheduler = BatchScheduler(config, observe)

    def load(version_dir: Path) -> Servable:
        return BatchingServable(loader(version_dir), scheduler)

    return load


class BatchingServable:
    """`model`, with `batched` Predicts; everything else (`predict` too) is the model's own."""

    def __init__(self, model: Servable, scheduler: BatchScheduler):
        self.model = model
        self.scheduler = scheduler

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def batched(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str],
        deadline: float | None,
    ) -> Awaitable[tuple[str, Outputs]] | None:
        """An awaitable of the request's answer from a shared model call, or None when it
        must run alone (`predict`)."""
        key, rows = self._queue_key(signature_name, inputs, output_filter)
        if key is None or not self.scheduler.accepts(self, key):
            return None

        def process(merged: Mapping[str, np.ndarray], deadline: float | None):
            return self.model.predict(signature_name, merged, output_filter, deadline=deadline)

        return self.scheduler.run(self, key, process, inputs, rows, deadline)

    def close(self) -> None:
        """Let this version's queued requests finish (bounded), then close the model."""
        self.scheduler.drain(self)
        self.model.close()

    def _queue_key(
        self, signature_name: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str]
    ) -> tuple[Hashable | None, int]:
        """The queue a request joins and its rows, or (None, 0) if it must run alone."""
        if not inputs:
            return None, 0
        parts, rows = [], None
        for name, value in inputs.items():
            if not isinstance(value, np.ndarray) or value.ndim == 0:
                return None, 0
            if rows is None:
                rows = value.shape[0]
            elif value.shape[0] != rows:
                return None, 0  # no shared batch dimension: the model reports it
            parts.append((name, value.dtype.str, value.shape[1:]))
        if not rows or not self._batchable_signature(signature_name, inputs):
            return None, 0
        name = signature_name or DEFAULT_SIGNATURE
        return (name, tuple(output_filter), tuple(sorted(parts))), rows

    def _batchable_signature(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> bool:
        """False when the request leaves inputs to defaults, or dim 0 is fixed."""
        signature = self.model.signatures.get(signature_name or DEFAULT_SIGNATURE)
        if signature is None:
            return True  # the model itself answers that the signature is missing
        if set(signature.inputs) != set(inputs):
            return False
        return not any(info.shape and info.shape[0] >= 0 for info in signature.inputs.values())
