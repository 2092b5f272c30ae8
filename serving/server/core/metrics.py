"""Prometheus metrics: request counts and latency per model, version, API and method.

Names follow Prometheus conventions rather than TF Serving's `:tensorflow:serving:*`
ones; they are served on the REST port at the path the monitoring config enables.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

# Loopback latencies are sub-millisecond; the tail reaches seconds for big batches.
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """The server's own registry (not the process-global one), so tests and servers don't mix."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple, object] = {}
        labels = ("model", "version", "api", "method")
        self.requests = Counter(
            "fmnist_serving_requests",
            "Requests answered, by model, version, API, method and canonical status code.",
            (*labels, "code"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "fmnist_serving_request_latency_seconds",
            "Time from request received to response ready, successful requests.",
            labels,
            buckets=_BUCKETS,
            registry=self.registry,
        )
        # --enable_batching: one observation per model call the batch scheduler makes, so
        # `_count` is the number of model calls and `_sum` the rows they ran (with padding).
        self.batch_size = Histogram(
            "fmnist_serving_batch_size",
            "Rows per batched model call (incl. padding), like TF Serving's processed_batch_size.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = Counter(
            "fmnist_serving_batched_requests",
            "Requests (or pieces of split requests) answered by batched model calls.",
            registry=self.registry,
        )
        self.batch_padding = Counter(
            "fmnist_serving_batch_padding_rows",
            "Padding rows added to reach an allowed batch size.",
            registry=self.registry,
        )
        self._add_request_log_metrics()

    def _add_request_log_metrics(self) -> None:
        # Request logging (logging_config): records written, and records given up so that a
        # request never waits for, or fails on, its log.
        self.request_log_written = Counter(
            "fmnist_serving_request_log_records",
            "Sampled requests written to the model's request log.",
            ("model",),
            registry=self.registry,
        )
        self.request_log_dropped = Counter(
            "fmnist_serving_request_log_dropped",
            "Sampled requests not logged: queue_full (the writer is behind), write_error "
            "(the disk or directory failed) or encode_error.",
            ("model", "reason"),
            registry=self.registry,
        )

    def logged(self, model: str, count: int = 1) -> None:
        self._child(self.request_log_written, (model,)).inc(count)

    def log_dropped(self, model: str, reason: str, count: int = 1) -> None:
        self._child(self.request_log_dropped, (model, reason)).inc(count)

    def observe_batch(self, rows: int, padding: int, requests: int) -> None:
        """One batched model call: its rows (incl. padding), padding rows and requests."""
        self.batch_size.observe(rows)
        self.batch_padding.inc(padding)
        self.batch_requests.inc(requests)

    def finish(self, call: Any) -> None:
        """One answered request: a data plane `Call` (its model, version, API, method, code
        and seconds)."""
        labels = (call.model, call.version, call.api, call.method)
        self._child(self.requests, (*labels, call.code.name)).inc()
        if call.code.name == "OK":
            self._child(self.latency, labels).observe(call.seconds)

    def _child(self, metric, labels: tuple[str, ...]):
        """The metric's child for these label values, looked up once (`labels()` validates
        and locks on every call, a cost on every request)."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def exposition(self) -> bytes:
        """The text format; with several server processes, their counts added up."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
