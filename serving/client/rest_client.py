"""`RestClient`: TF Serving's REST API (`/v1/models/...`) over a pooled `requests.Session`,
tensors in TF Serving's JSON (wire/json_tensors.py). No TensorFlow import.
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np
import requests

from fmnist.errors import UserError
from fmnist.serving.client.base import (
    _UNPINNED_ATTEMPTS,
    ServingError,
    _check_choice,
    _Client,
    check_images,
)
from fmnist.serving.wire.json_tensors import request_json, response_array
from fmnist.serving.wire.status import code_of_http


class RestClient(_Client):
    """TF Serving's REST API (`/v1/models/...`) over a pooled `requests.Session`.

    Requests use the row format (`instances`) when every input has the same batch
    dimension, else the columnar one (`inputs`); `columnar=True` always uses the latter.
    """

    api = "REST"

    def __init__(
        self, url: str, model_name: str, *, columnar: bool = False, **options: Any
    ) -> None:
        super().__init__(model_name, **options)
        if not url.startswith(("http://", "https://")):
            url = "http://" + url
        self.url = self.endpoint = _check_url(url.rstrip("/"))
        self.columnar = columnar
        self._session = requests.Session()
        self._output_names: dict[tuple[int | None, str | None, str], list[str]] = {}
        self._lock = threading.Lock()

    def _path(self, version: int | None, label: str | None) -> str:
        _check_choice(version, label)
        path = f"{self.url}/v1/models/{quote(self.model_name, safe='')}"
        if version is not None:
            return f"{path}/versions/{int(version)}"
        if label is not None:
            return f"{path}/labels/{quote(label, safe='')}"
        return path

    def _request(
        self,
        method: str,
        url: str,
        where: str,
        body: dict | None = None,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> dict:
        # TF Serving reads NaN/Infinity, which requests' own JSON encoding refuses.
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"} if data else None

        def attempt(seconds: float) -> dict:
            try:
                response = self._session.request(
                    method, url, data=data, headers=headers, timeout=seconds
                )
            except requests.ConnectTimeout as err:  # nobody answered the connection: retry
                raise ServingError("UNAVAILABLE", _reason(err)) from None
            except requests.Timeout as err:
                raise ServingError("DEADLINE_EXCEEDED", _reason(err)) from None
            except requests.exceptions.SSLError as err:  # not transient: do not retry
                raise ServingError("UNAUTHENTICATED", _reason(err)) from None
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as err:
                raise ServingError("UNAVAILABLE", _reason(err)) from None
            except requests.RequestException as err:  # e.g. an invalid URL
                raise ServingError("INVALID_ARGUMENT", _reason(err)) from None
            try:
                payload = response.json()  # Python's json reads TF Serving's NaN/Infinity
            except ValueError:
                payload = {"error": response.text.strip()[:200] or response.reason}
            if response.status_code != 200:
                message = payload.get("error") if isinstance(payload, dict) else None
                raise ServingError(
                    code_of_http(response.status_code).name,
                    str(message or response.reason),
                    http_status=response.status_code,
                )
            return payload

        return self._call(attempt, where, timeout, retries)

    # REST answers do not say which version answered. An unpinned request stays unpinned (a
    # version learned from metadata may retire before the request arrives: pinning it would
    # turn a rollout into NOT_FOUND); the version that answered is the one the model's
    # metadata names both before and after the batches (versions only move forward), and a
    # request during which the model changed is sent again.

    def predict(
        self,
        images,
        *,
        version=None,
        label=None,
        signature="serving_default",
        batch_size=None,
        dequantize=None,
    ):
        images = check_images(images)
        _check_choice(version, label)
        images = self.fit_images(images, version=version, label=label, signature=signature)
        if version is not None:  # pinned: the version that answers is the one asked for
            return self._predict_batches(images, version, None, signature, batch_size, dequantize)
        seen = []
        for _ in range(_UNPINNED_ATTEMPTS):
            before = self._served_version(label, signature)
            prediction = self._predict_batches(
                images, None, label, signature, batch_size, dequantize
            )
            after = self._served_version(label, signature)
            if before == after:
                prediction.model_version = after
                return prediction
            seen.append(f"{before} -> {after}")
        raise ServingError(
            "ABORTED",
            f"the model changed during each of {_UNPINNED_ATTEMPTS} attempts (versions "
            f"{', '.join(seen)}); pin a version or a label",
            where=self._where(None, label),
        )

    def predict_raw(self, inputs, *, version=None, label=None, signature="serving_default"):
        _check_choice(version, label)
        if version is not None:
            return self._predict_batch(inputs, version, None, signature)[0], version
        before = self._served_version(label, signature)
        outputs, _ = self._predict_batch(inputs, None, label, signature)
        after = self._served_version(label, signature)
        return outputs, (after if before == after else None)

    def _served_version(self, label: str | None, signature: str) -> int | None:
        """The version the unpinned (or label) path serves now, from its metadata; the
        signature's output names are refreshed from the same answer."""
        metadata = self.metadata(label=label)
        spec = metadata.get("model_spec", {})
        self._remember_outputs(None, label, signature, metadata)
        return int(spec["version"]) if spec.get("version") else None

    def _predict_batch(self, inputs, version, label, signature):
        where = self._where(version, label)
        arrays = {name: np.asarray(value) for name, value in inputs.items()}
        payload = self._request(
            "POST", f"{self._path(version, label)}:predict", where, self._body(arrays, signature)
        )
        outputs, bare = _outputs_from_json(payload, where)
        if bare is not None:  # a single-output signature's bare tensor: name it
            names = self._output_names.get((version, label, signature))
            if names is None:
                metadata = self.metadata(version=version, label=label)
                names = self._remember_outputs(version, label, signature, metadata)
            outputs = {names[0] if len(names) == 1 else "outputs": bare}
        return outputs, version

    def _body(self, arrays: dict[str, np.ndarray], signature: str) -> dict:
        """Row format when every input has the same batch size, else columnar."""
        sizes = {a.shape[0] if a.ndim else None for a in arrays.values()}
        if self.columnar or len(sizes) != 1 or None in sizes:
            return {
                "signature_name": signature,
                "inputs": {name: request_json(a) for name, a in arrays.items()},
            }
        columns = {name: request_json(a) for name, a in arrays.items()}
        rows = [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]
        return {"signature_name": signature, "instances": rows}

    def _remember_outputs(
        self, version: int | None, label: str | None, signature: str, metadata: dict
    ) -> list[str]:
        """Cache a signature's output names for requests to (version, label): the unpinned
        entry (None, None) follows whatever version serves, refreshed by every metadata call."""
        signatures = metadata.get("metadata", {}).get("signature_def", {})
        names = sorted(signatures.get("signature_def", {}).get(signature, {}).get("outputs", {}))
        with self._lock:
            self._output_names[(version, label, signature)] = names
        return names

    def post(
        self, verb: str, body: dict, *, version: int | None = None, label: str | None = None
    ) -> dict:
        """POST a JSON body to the model's `:verb` (`predict`, `classify`, `regress`): the
        answer's JSON. Deadline and retries as every call."""
        where = self._where(version, label)
        return self._request("POST", f"{self._path(version, label)}:{verb}", where, body)

    def metadata(self, *, version=None, label=None):
        url = f"{self._path(version, label)}/metadata"
        return self._request("GET", url, self._where(version, label))

    def _status(self, version, label, timeout, retries):
        where = self._where(version, label)
        payload = self._request("GET", self._path(version, label), where, None, timeout, retries)
        return [
            {
                "version": int(s["version"]),
                "state": s["state"],
                "error_code": s.get("status", {}).get("error_code", "OK"),
                "error_message": s.get("status", {}).get("error_message", ""),
            }
            for s in payload.get("model_version_status", [])
        ]

    def close(self) -> None:
        self._session.close()


def _check_url(url: str) -> str:
    """`url` if it names a host and a valid port, else a UserError saying what is wrong."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as err:
        raise UserError(f"invalid TF Serving REST URL {url!r}: {err}") from None
    if not parts.hostname or parts.query or parts.fragment:
        raise UserError(
            f"invalid TF Serving REST URL {url!r}: expected http://HOST:PORT[/PREFIX], e.g. "
            "http://localhost:8501"
        )
    return url


def _reason(err: Exception) -> str:
    """The innermost cause of a requests error, e.g. 'Connection refused'."""
    text = str(err)
    for marker in ("Connection refused", "Connection reset", "Name or service not known"):
        if marker in text:
            return marker
    if isinstance(err, requests.Timeout):
        return "no answer within the deadline"
    return text[-200:]


def _outputs_from_json(payload: Any, where: str) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Columnar `outputs` or row `predictions` -> ({name: array}, None) for named tensors,
    or ({}, array) for the bare tensor of a single-output signature."""
    if isinstance(payload, dict) and "outputs" in payload:
        outputs = payload["outputs"]
        if isinstance(outputs, dict) and "b64" not in outputs:
            return {name: response_array(value) for name, value in outputs.items()}, None
    elif isinstance(payload, dict) and "predictions" in payload:
        outputs = payload["predictions"]
        if outputs and isinstance(outputs[0], dict) and "b64" not in outputs[0]:
            names = list(outputs[0])
            return {name: response_array([row[name] for row in outputs]) for name in names}, None
    else:
        raise ServingError(
            "INTERNAL", "answer has neither 'outputs' nor 'predictions'", where=where
        )
    return {}, response_array(outputs)
