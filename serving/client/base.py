"""What the TF Serving clients share: errors, results, deadlines, retries, batching.

`GrpcClient` (client/grpc_client.py, the official stubs) and `RestClient`
(client/rest_client.py, requests) have the same API and work against any TF Serving
endpoint, ours or the official container. Every call has a deadline (`timeout`, seconds,
covering its retries); failures that mean "not reachable right now" (gRPC UNAVAILABLE, HTTP
503, connection refused or reset) are retried with exponential backoff and jitter inside that
deadline, anything else (a bad request, a missing model) fails at once. Every failure is a
`ServingError` carrying the canonical code, the HTTP status (REST) and TF Serving's message.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from fmnist.errors import UserError
from fmnist.serving.client.signature import ImageInput, image_input

T = TypeVar("T")
DEFAULT_MAX_MESSAGE_BYTES = 64 << 20  # gRPC's own default (4 MiB) is too small for batches
RETRYABLE_CODES = frozenset({"UNAVAILABLE"})
_UNPINNED_ATTEMPTS = 3  # an unpinned predict during which the model changed is sent again


class ServingError(UserError):
    """A TF Serving request failed: canonical `code`, `http_status` (REST), `message`, and
    how many `attempts` the call made (1: it was not retried)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        where: str = "TF Serving",
        http_status: int | None = None,
        summary: str | None = None,
        attempts: int = 1,
    ) -> None:
        self.code = code
        self.message = message
        self.http_status = http_status
        self.where = where
        self.attempts = attempts
        status = f" (HTTP {http_status})" if http_status else ""
        line = summary or f"{where}: {code}{status}: {message}"
        super().__init__(" ".join(line.split()))  # one line, whatever the server said

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES


class _ModelChanged(ServingError):
    """The batches of one predict were answered by different versions."""


@dataclass
class Prediction:
    """Class ids int64 [N], probabilities float32 [N, classes], the version that answered,
    and the output they came from (`scores`: a TFLite int8 model's, dequantized)."""

    class_ids: np.ndarray
    probabilities: np.ndarray
    model_version: int | None
    output: str = "probabilities"


@dataclass(frozen=True)
class Dequantize:
    """How a quantized `scores` output maps to probabilities: (q - zero_point) * scale, in
    float32 as the edge runner computes it (so the two agree bit for bit)."""

    scale: float
    zero_point: int

    def __call__(self, values: np.ndarray) -> np.ndarray:
        real = np.asarray(values).astype(np.float32)
        real -= np.float32(self.zero_point)
        real *= np.float32(self.scale)
        return real


def check_images(images: Any) -> np.ndarray:
    """uint8 [N, H, W, C] or [N, H, W] of any size (the served model's signature decides what
    it takes, not the client) -> contiguous; anything else is a UserError."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise UserError(
            f"images must be uint8 [N, H, W, C] or [N, H, W], got {images.dtype} "
            f"{list(images.shape)}"
        )
    if len(images) == 0:
        raise UserError("no images to send")
    return np.ascontiguousarray(images)


def fit_rank(images: np.ndarray, rank: int | None) -> np.ndarray:
    """Grayscale images as a signature of `rank` takes them: [N, H, W] (3) or [N, H, W, 1]
    (4); anything else as it is (the server then says what it wants)."""
    if rank == 3 and images.ndim == 4 and images.shape[-1] == 1:
        return images[..., 0]
    if rank == 4 and images.ndim == 3:
        return images[..., None]
    return images


class _Client:
    """What both clients share: batching, deadlines, retries, waiting for a model."""

    endpoint: str  # host:port or URL, for messages
    api: str  # "gRPC" or "REST"

    def __init__(
        self,
        model_name: str,
        *,
        timeout: float = 30.0,
        retries: int | None = None,
        backoff: float = 0.1,
        max_backoff: float = 2.0,
        batch_size: int = 256,
    ) -> None:
        if not timeout > 0 or batch_size < 1 or (retries or 0) < 0 or not backoff >= 0:
            raise UserError("timeout must be > 0, batch_size >= 1, retries and backoff >= 0")
        self.model_name = model_name
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max(max_backoff, backoff)
        self.batch_size = batch_size
        self._ranks: dict[tuple[int | None, str | None, str], int | None] = {}

    @property
    def where(self) -> str:
        return f"TF Serving {self.api} {self.endpoint}"

    # --- the API ------------------------------------------------------------------------

    def predict(
        self,
        images: Any,
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str = "serving_default",
        batch_size: int | None = None,
        dequantize: Dequantize | None = None,
    ) -> Prediction:
        """Class ids and probabilities for uint8 images, sent in batches of `batch_size`.

        A model served from TFLite answers raw int8 `scores`, as TF Serving does; with
        `dequantize` (the bundle manifest's int8 output quantization) they are read too."""
        images = check_images(images)
        _check_choice(version, label)
        images = self.fit_images(images, version=version, label=label, signature=signature)
        args = (images, version, label, signature, batch_size, dequantize)
        for _ in range(_UNPINNED_ATTEMPTS - 1):
            try:
                return self._predict_batches(*args)
            except _ModelChanged:  # unpinned, and a rollout happened between batches: resend
                pass
        return self._predict_batches(*args)

    def _predict_batches(
        self,
        images: np.ndarray,
        version: int | None,
        label: str | None,
        signature: str,
        batch_size: int | None,
        dequantize: Dequantize | None = None,
    ) -> Prediction:
        batch_size = batch_size or self.batch_size
        probabilities, class_ids, versions = [], [], set()
        source = "probabilities"
        for start in range(0, len(images), batch_size):
            outputs, answered = self._predict_batch(
                {"images": images[start : start + batch_size]}, version, label, signature
            )
            if "probabilities" in outputs:
                probs = np.asarray(outputs["probabilities"], dtype=np.float32)
            elif "scores" in outputs and dequantize is not None:
                probs, source = dequantize(outputs["scores"]), "scores"
            else:
                needs = " (int8 'scores' need the bundle's quantization)" * ("scores" in outputs)
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"signature {signature!r} has no 'probabilities' output "
                    f"(outputs: {', '.join(outputs)}){needs}",
                    where=self._where(version, label),
                )
            probabilities.append(probs)
            ids = outputs.get("class_ids")
            class_ids.append(probs.argmax(1) if ids is None else np.asarray(ids, np.int64))
            versions.add(answered)
            if len(versions) > 1:
                raise _ModelChanged(
                    "ABORTED",
                    f"batches were answered by different versions {sorted(versions)} (the "
                    "model changed during the request); pin a version or a label",
                    where=self._where(version, label),
                )
        return Prediction(
            np.concatenate(class_ids), np.concatenate(probabilities), versions.pop(), source
        )

    def image_input(
        self,
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str = "serving_default",
    ) -> ImageInput:
        """What the signature's `images` input takes, from the model's metadata."""
        return image_input(self.metadata(version=version, label=label), signature)

    def fit_images(
        self,
        images: np.ndarray,
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str = "serving_default",
    ) -> np.ndarray:
        """Grayscale images shaped as the signature takes them (see fit_rank). Only
        grayscale batches are ambiguous, so only they cost one metadata call (per client,
        version or label, and signature)."""
        if images.ndim == 4 and images.shape[-1] != 1:
            return images
        key = (version, label, signature)
        if key not in self._ranks:
            try:
                self._ranks[key] = self.image_input(
                    version=version, label=label, signature=signature
                ).rank
            except ServingError:
                raise
            except UserError:  # no `images` input: the server's answer will say so
                self._ranks[key] = None
        return fit_rank(images, self._ranks[key])

    def predict_raw(
        self,
        inputs: dict[str, Any],
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str = "serving_default",
    ) -> tuple[dict[str, np.ndarray], int | None]:
        """One Predict call with named input tensors; the outputs and the answering version."""
        _check_choice(version, label)
        return self._predict_batch(inputs, version, label, signature)

    def _predict_batch(
        self, inputs: dict[str, Any], version: int | None, label: str | None, signature: str
    ) -> tuple[dict[str, np.ndarray], int | None]:
        """One Predict call, exactly as asked: outputs, and the version if the answer says."""
        raise NotImplementedError

    def metadata(self, *, version: int | None = None, label: str | None = None) -> dict:
        """The model's metadata (model_spec and signature_def) as TF Serving's JSON."""
        raise NotImplementedError

    def status(self, *, version: int | None = None, label: str | None = None) -> list[dict]:
        """[{version, state, error_code, error_message}] for the model's versions."""
        return self._status(version, label, self.timeout, self.retries)

    def wait_until_available(
        self, timeout: float = 60.0, *, version: int | None = None, label: str | None = None
    ) -> int:
        """Poll the model status until a version is AVAILABLE; return that version."""
        start = time.monotonic()
        deadline = start + timeout
        last = "no answer yet"
        delay = self.backoff or 0.1
        while True:
            left = deadline - time.monotonic()
            try:
                states = self._status(version, label, max(min(self.timeout, left), 0.05), 0)
                available = [s["version"] for s in states if s["state"] == "AVAILABLE"]
                if available:
                    return max(available)
                last = "versions " + ", ".join(f"{s['version']} {s['state']}" for s in states)
            except ServingError as err:
                if err.code not in ("UNAVAILABLE", "NOT_FOUND", "DEADLINE_EXCEEDED"):
                    raise
                last = f"{err.code}: {err.message}"
            if time.monotonic() + delay > deadline:
                raise ServingError(
                    "DEADLINE_EXCEEDED",
                    f"not AVAILABLE within {timeout:g} s (last: {last})",
                    where=self._where(version, label),
                )
            time.sleep(delay)
            delay = min(delay * 2, self.max_backoff)

    def close(self) -> None:
        """Release connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- for subclasses -----------------------------------------------------------------

    def _status(
        self, version: int | None, label: str | None, timeout: float, retries: int
    ) -> list[dict]:
        raise NotImplementedError

    def _where(self, version: int | None, label: str | None) -> str:
        """'TF Serving gRPC host:port, model 'm' version 2': who failed, for messages."""
        model = f"model {self.model_name!r}"
        if version is not None:
            model += f" version {version}"
        elif label is not None:
            model += f" label {label!r}"
        return f"{self.where}, {model}"

    def _call(
        self,
        attempt: Callable[[float], T],
        where: str,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> T:
        """Run `attempt(seconds_left)`, retrying retryable failures until the deadline (or
        `retries` retries, when set).

        Hand-written on purpose: gRPC's retry service config caps attempts at 5 and urllib3's
        `Retry` counts attempts with no overall deadline, while waiting for a server that is
        still loading needs "retry until this deadline", the same for both APIs."""
        timeout = self.timeout if timeout is None else timeout
        retries = self.retries if retries is None else retries
        retries = float("inf") if retries is None else retries
        start = time.monotonic()
        deadline = start + timeout
        delay, tries = self.backoff, 0
        while True:
            tries += 1
            try:
                return attempt(max(deadline - time.monotonic(), 0.001))
            except ServingError as err:
                if not err.retryable:
                    message = err.message
                    if err.code == "DEADLINE_EXCEEDED":
                        message += f" (deadline {timeout:g} s)"
                    raise ServingError(
                        err.code,
                        message,
                        where=where,
                        http_status=err.http_status,
                        attempts=tries,
                    ) from None
                left = deadline - time.monotonic()
                pause = min(delay * random.uniform(0.5, 1.0), max(left, 0.0))
                if tries > retries or left <= pause:
                    spent = time.monotonic() - start
                    summary = (
                        f"could not reach TF Serving at {self.endpoint} ({self.api}, "
                        f"{where.split(', ', 1)[-1]}) after {tries} attempt"
                        f"{'s' if tries > 1 else ''} in {spent:.1f} s: {err.code}"
                        f"{f' (HTTP {err.http_status})' if err.http_status else ''}: "
                        f"{err.message}"
                    )
                    raise ServingError(
                        err.code,
                        err.message,
                        where=where,
                        http_status=err.http_status,
                        summary=summary,
                        attempts=tries,
                    ) from None
                time.sleep(pause)
                delay = min(delay * 2, self.max_backoff)


def _check_choice(version: int | None, label: str | None) -> None:
    if version is not None and label is not None:
        raise UserError("give a version or a label, not both")
