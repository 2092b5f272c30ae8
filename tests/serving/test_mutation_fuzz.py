"""Byte-level damage to real requests, against every server configuration.

Valid requests for each served model (fashion_mnist images, half_plus_two, classify and
regress examples, metadata and status) are damaged byte by byte: flips, truncations,
insertions and duplicated spans, in JSON bodies and serialized protos alike. Each case is
sent (eight at a time, beside valid requests that must keep their exact answers, so a
damaged request that fails cannot fail the others batched with it) to: SavedModel;
`--prefer_tflite_model`; `--enable_batching`; TFLite with batching; and the TensorFlow-free
server (in $FMNIST_TFLITE_RUNTIME_PYTHON). The rules, after every case:
  * the process is alive;
  * no HTTP 5xx but 503 (a full batch queue is TF Serving's UNAVAILABLE), and every REST
    error body is `{"error": "..."}`;
  * no gRPC UNKNOWN, and INTERNAL only for a message that does not parse, as TF Serving.

FMNIST_MUTATION_CASES cases per configuration (default 300; `.ci/run` sets 1000), seeded,
so a run is reproducible; the counts go to the file FMNIST_MUTATION_REPORT names.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from google.protobuf import message

from fmnist.serving.server.process import ServerProcess, start_server
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.tensor_proto import to_tensor_proto

pytestmark = pytest.mark.integration

CASES = int(os.environ.get("FMNIST_MUTATION_CASES", "300"))
REPORT = os.environ.get("FMNIST_MUTATION_REPORT")
CONFIGURATIONS = ["saved_model", "tflite", "batching", "tflite_batching", "tf_free"]
RESULTS: dict[str, Counter] = {}
BATCHING = "max_batch_size { value: 8 }\nbatch_timeout_micros { value: 1000 }\n"


@pytest.fixture(scope="module")
def models(exported_bundle: Path, serving_fixtures: Path, tmp_path_factory) -> Path:
    """A model config file: fashion_mnist (the exported bundle: SavedModel and model.tflite)
    and half_plus_two (TF Serving's SavedModel, with its TFLite twin as model.tflite)."""
    root = tmp_path_factory.mktemp("mutation")
    shutil.copytree(exported_bundle, root / "fashion_mnist" / "1")
    half = root / "half_plus_two" / "123"
    shutil.copytree(serving_fixtures / "saved_model_half_plus_two_cpu" / "00000123", half)
    tflite = serving_fixtures / "saved_model_half_plus_two_tflite" / "00000123" / "model.tflite"
    shutil.copy(tflite, half / "model.tflite")
    (root / "batching.config").write_text(BATCHING)
    (root / "models.config").write_text(
        "model_config_list {\n"
        + "".join(
            f'  config {{ name: "{name}" base_path: "{root / name}" model_platform: '
            '"tensorflow" }\n'
            for name in ("fashion_mnist", "half_plus_two")
        )
        + "}\n"
    )
    return root


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if RESULTS:
        print(f"\nmutation fuzz: {json.dumps(RESULTS, sort_keys=True)}")
    if REPORT and RESULTS:
        Path(REPORT).write_text(json.dumps(RESULTS, sort_keys=True))


def _server(configuration: str, models: Path, tmp_path: Path) -> ServerProcess:
    flags = ["--model_config_file", str(models / "models.config")]
    python = None
    if "tflite" in configuration or configuration == "tf_free":
        flags.append("--prefer_tflite_model")
    if "batching" in configuration:
        flags += [
            "--enable_batching",
            "--batching_parameters_file",
            str(models / "batching.config"),
        ]
    if configuration == "tf_free":
        python = os.environ.get("FMNIST_TFLITE_RUNTIME_PYTHON")
        if not python:
            pytest.skip("FMNIST_TFLITE_RUNTIME_PYTHON (a Python without TensorFlow) is not set")
    return start_server(*flags, log_dir=tmp_path / "logs", python=python)


# --- valid requests, to damage ------------------------------------------------------------


def _images(count: int) -> np.ndarray:
    return np.random.default_rng(count).integers(0, 256, (count, 28, 28, 1), dtype=np.uint8)


def rest_seeds() -> list[tuple[str, bytes]]:
    image = _images(1)
    examples = {"examples": [{"x": 1.0}, {"x": [2.0]}], "context": {"y": 3}}
    bodies = [
        ("fashion_mnist:predict", {"instances": image.tolist()}),
        ("fashion_mnist:predict", {"inputs": {"images": _images(2).tolist()}}),
        ("half_plus_two:predict", {"instances": [1.0, 2.0, 5.0]}),
        ("half_plus_two:predict", {"signature_name": "serving_default", "inputs": [3.0]}),
        ("half_plus_two:classify", {"signature_name": "classify_x_to_y", **examples}),
        ("half_plus_two:regress", {"signature_name": "regress_x_to_y", **examples}),
    ]
    return [(path, json.dumps(body).encode()) for path, body in bodies]


def grpc_seeds() -> list[tuple[str, str, bytes]]:
    """(service, method, serialized request)."""
    predict = pb.PredictRequest()
    predict.model_spec.name = "fashion_mnist"
    predict.inputs["images"].CopyFrom(to_tensor_proto(_images(1)))
    half = pb.PredictRequest()
    half.model_spec.name = "half_plus_two"
    half.inputs["x"].float_val.extend([1.0, 2.0])
    half.inputs["x"].dtype = 1
    half.inputs["x"].tensor_shape.dim.add(size=2)
    half.inputs["x"].tensor_shape.dim.add(size=1)
    classify = pb.ClassificationRequest()
    classify.model_spec.name, classify.model_spec.signature_name = (
        "half_plus_two",
        "classify_x_to_y",
    )
    classify.input.example_list.examples.add().features.feature["x"].float_list.value.append(1)
    regress = pb.RegressionRequest()
    regress.CopyFrom(pb.RegressionRequest.FromString(classify.SerializeToString()))
    regress.model_spec.signature_name = "regress_x_to_y"
    multi = pb.MultiInferenceRequest()
    multi.input.CopyFrom(classify.input)
    for signature, method in (("classify_x_to_y", "classify"), ("regress_x_to_y", "regress")):
        task = multi.tasks.add(method_name=f"tensorflow/serving/{method}")
        task.model_spec.name, task.model_spec.signature_name = "half_plus_two", signature
    metadata = pb.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata.model_spec.name = "fashion_mnist"
    status = pb.GetModelStatusRequest()
    status.model_spec.name = "half_plus_two"
    service = pb.PREDICTION_SERVICE
    return [
        (service, "Predict", predict.SerializeToString()),
        (service, "Predict", half.SerializeToString()),
        (service, "Classify", classify.SerializeToString()),
        (service, "Regress", regress.SerializeToString()),
        (service, "MultiInference", multi.SerializeToString()),
        (service, "GetModelMetadata", metadata.SerializeToString()),
        (pb.MODEL_SERVICE, "GetModelStatus", status.SerializeToString()),
    ]


def damaged(data: bytes, rng: random.Random) -> bytes:
    """1-3 of: a flipped byte, a truncation, inserted bytes, a duplicated or deleted span."""
    out = bytearray(data)
    for _ in range(rng.choices((1, 2, 3), weights=(6, 3, 1))[0]):
        at = rng.randrange(len(out) + 1)
        # Flips most: they keep a message's framing, so its content reaches deeper checks.
        kind = rng.choices(("flip", "truncate", "insert", "duplicate", "delete"), (4, 1, 2, 2, 1))[
            0
        ]
        if kind == "flip" and out:
            at = min(at, len(out) - 1)
            out[at] ^= 1 << rng.randrange(8) if rng.random() < 0.7 else rng.randrange(1, 256)
        elif kind == "truncate":
            del out[at:]
        elif kind == "insert":
            tokens = [b",", b"[", b"]", b'"', b"-", b"1e999", b"\x00", b"\xff"]
            out[at:at] = rng.choice([*tokens, bytes([rng.randrange(256)])])
        elif kind == "duplicate" and out:
            start = rng.randrange(len(out))
            out[at:at] = out[start : start + rng.randint(1, 64)]
        elif out:
            del out[at : at + rng.randint(1, 16)]
    return bytes(out)


# --- sending and judging -------------------------------------------------------------------


class Judge:
    """Sends cases and canaries to one server, keeping count of what the rules forbid."""

    def __init__(self, server: ServerProcess):
        self.server = server
        self.counts: Counter = Counter()
        self.faults: list[str] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self.channel = grpc.insecure_channel(server.grpc_target) if server.grpc_port else None

    def _http(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _fault(self, what: str) -> None:
        with self._lock:
            self.faults.append(what)

    def rest(self, path: str, body: bytes) -> None:
        url = f"{self.server.rest_url}/v1/models/{path}"
        response = self._http().post(url, data=body, timeout=60)
        with self._lock:
            self.counts["rest"] += 1
            self.counts[f"http_{response.status_code // 100}xx"] += 1
        if response.status_code >= 500 and response.status_code != 503:
            self._fault(f"HTTP {response.status_code} for {path} {body[:200]!r}: {response.text}")
        if response.status_code != 200:
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if not (
                isinstance(answer, dict)
                and list(answer) == ["error"]
                and isinstance(answer["error"], str)
            ):
                self._fault(f"error body {response.text[:200]!r} for {path}")

    def grpc(self, service: str, method: str, raw: bytes) -> None:
        call = self.channel.unary_unary(f"/{service}/{method}")  # bytes in, bytes out
        code, details = grpc.StatusCode.OK, ""
        try:
            call(raw, timeout=60)
        except grpc.RpcError as err:
            code, details = err.code(), err.details()
        with self._lock:
            self.counts["grpc"] += 1
            self.counts[f"grpc_{code.name}"] += 1
        if code == grpc.StatusCode.UNKNOWN:
            self._fault(f"UNKNOWN for {method} {raw[:100]!r}: {details}")
        if code == grpc.StatusCode.INTERNAL and _parses(service, method, raw):
            self._fault(f"INTERNAL for a request that parses, {method}: {details}")

    def canary(self, image: np.ndarray, expected: list[int]) -> None:
        """A valid REST predict whose answer must be the one it gets when sent alone."""
        url = f"{self.server.rest_url}/v1/models/fashion_mnist:predict"
        response = self._http().post(url, json={"instances": image.tolist()}, timeout=60)
        with self._lock:
            self.counts["canaries"] += 1
        if response.status_code != 200 or _argmax(response.json()) != expected:
            self._fault(f"a valid request beside damaged ones got {response.text[:200]}")


def _parses(service: str, method: str, raw: bytes) -> bool:
    request_type, _ = pb.SERVICES[service][method]
    try:
        request_type.FromString(raw)
    except message.DecodeError:
        return False
    return True


def _argmax(answer: dict) -> list[int]:
    """The class of each row: an object of probabilities and class_ids per row (the SavedModel
    and model.tflite), or a row of int8 scores (a bundle exported before model.tflite did so)."""
    rows = [r["probabilities"] if isinstance(r, dict) else r for r in answer["predictions"]]
    return np.asarray(rows, dtype=np.float32).argmax(1).tolist()


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_damaged_requests_get_request_errors(configuration, models, tmp_path) -> None:
    server = _server(configuration, models, tmp_path)
    judge = Judge(server)
    canaries = _images(4)
    try:
        expected = _argmax(
            requests.post(
                f"{server.rest_url}/v1/models/fashion_mnist:predict",
                json={"instances": canaries.tolist()},
                timeout=60,
            ).json()
        )
        rng = random.Random(f"mutation-{configuration}")
        rest, grpc_requests = rest_seeds(), grpc_seeds()
        with ThreadPoolExecutor(8) as pool:
            jobs = []
            for case in range(CASES):
                if case % 2 == 0:
                    path, body = rng.choice(rest)
                    jobs.append(pool.submit(judge.rest, path, damaged(body, rng)))
                else:
                    service, method, raw = rng.choice(grpc_requests)
                    jobs.append(pool.submit(judge.grpc, service, method, damaged(raw, rng)))
                if case % 4 == 0:
                    row = case // 4 % len(canaries)
                    jobs.append(pool.submit(judge.canary, canaries[row : row + 1], [expected[row]]))
            for job in jobs:
                job.result()
                if server.process.poll() is not None:
                    break
        alive = server.process.poll() is None
    finally:
        if judge.channel is not None:
            judge.channel.close()
        code = server.stop()
    RESULTS[configuration] = Counter(
        cases=CASES, crashes=0 if alive else 1, faults=len(judge.faults), **judge.counts
    )
    assert alive, server.log()[-3000:]
    assert code == 0, server.log()[-3000:]
    assert judge.faults == [], "\n".join(judge.faults[:20])
