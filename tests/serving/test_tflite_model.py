"""The TFLite loader in process: TF Serving's derived signatures (its half_plus_two_tflite
test model), exact int8 answers against the edge runner, bad inputs, and no TensorFlow."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fmnist import dataset
from fmnist.edge.classifier import Classifier
from fmnist.serving.server.servables.tflite import TFLITE_FILE, TfliteLoadError, TfliteServable
from fmnist.serving.wire.dtypes import DT_FLOAT, DT_INT64, DT_UINT8
from fmnist.serving.wire.signature import PREDICT_METHOD, REGRESS_METHOD, Signature, TensorInfo
from fmnist.serving.wire.status import Code, StatusError

HALF_PLUS_TWO = "saved_model_half_plus_two_tflite/00000123"


@pytest.fixture(scope="module")
def half_plus_two(serving_fixtures: Path) -> TfliteServable:
    return TfliteServable(serving_fixtures / HALF_PLUS_TWO, num_interpreters=2)


@pytest.fixture(scope="module")
def int8_model(exported_bundle: Path) -> TfliteServable:
    return TfliteServable(exported_bundle)


@pytest.fixture(scope="module")
def test_images(data_dir: Path) -> np.ndarray:
    return dataset.load_test(data_dir).images[..., None]  # [N, 28, 28, 1], as served


def _input_alias(model: TfliteServable) -> str:
    (alias,) = model.signatures["serving_default"].inputs
    return alias


def _status(call, *args, **kwargs) -> StatusError:
    with pytest.raises(StatusError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_half_plus_two_signature_is_the_one_tf_serving_derives(half_plus_two) -> None:
    # tflite_session_test.cc BasicTest: aliases are tensor names, shapes as loaded ([1, 1]).
    tensor = {"x": TensorInfo("x", DT_FLOAT, (1, 1)), "y": TensorInfo("y", DT_FLOAT, (1, 1))}
    assert half_plus_two.signatures == {
        "serving_default": Signature(
            PREDICT_METHOD, inputs={"x": tensor["x"]}, outputs={"y": tensor["y"]}
        )
    }


def test_half_plus_two_answers_any_batch_size(half_plus_two) -> None:
    for values, expected in (([1.0, 2.0, 5.0], [2.5, 3.0, 4.5]), ([2.0], [3.0])):
        name, outputs = half_plus_two.predict("", {"x": np.array(values, np.float32)})
        assert name == "serving_default"
        np.testing.assert_array_equal(outputs["y"], np.array(expected, np.float32))


def test_metadata_signature_defs_match_tf_servings_text(half_plus_two) -> None:
    from google.protobuf import text_format

    from fmnist.serving.wire.messages import SignatureDef

    expected = text_format.Parse(
        'inputs { key: "x" value { name: "x" dtype: DT_FLOAT tensor_shape { dim { size: 1 } '
        'dim { size: 1 } } } } outputs { key: "y" value { name: "y" dtype: DT_FLOAT '
        "tensor_shape { dim { size: 1 } dim { size: 1 } } } } "
        'method_name: "tensorflow/serving/predict"',
        SignatureDef(),
    )
    assert dict(half_plus_two.metadata().signature_def) == {"serving_default": expected}


def test_int8_signature_is_the_stored_one_with_the_saved_models_outputs(int8_model) -> None:
    # Export stores TF Serving's SignatureDef metadata: the SavedModel's `images` input and
    # outputs (the int8 model dequantizes and takes the argmax itself).
    signature = int8_model.signatures["serving_default"]
    print("int8 model.tflite signatures:", int8_model.signatures)
    assert list(int8_model.signatures) == ["serving_default"]
    assert signature.method_name == PREDICT_METHOD
    assert {a: (i.dtype, i.shape) for a, i in signature.inputs.items()} == {
        "images": (DT_UINT8, (-1, 28, 28, 1))
    }
    assert {a: (i.dtype, i.shape) for a, i in signature.outputs.items()} == {
        "probabilities": (DT_FLOAT, (-1, 10)),
        "class_ids": (DT_INT64, (-1,)),
    }


def test_the_saved_models_warmup_requests_run_on_the_tflite_model(int8_model, exported_bundle):
    # TF Serving replays <version>/assets.extra warm-up records on the TFLite session too;
    # a request it cannot run would fail the version's load.
    import tensorflow as tf

    from fmnist.export import saved_model

    logs = saved_model.read_warmup(exported_bundle / saved_model.WARMUP_FILE)
    for log in logs:
        request = log.predict_log.request
        inputs = {alias: tf.make_ndarray(t) for alias, t in request.inputs.items()}
        _, outputs = int8_model.predict(request.model_spec.signature_name, inputs)
        assert outputs["probabilities"].shape == (len(inputs["images"]), 10)


def test_int8_answers_equal_the_edge_runner_exactly(int8_model, exported_bundle, test_images):
    classifier = Classifier(exported_bundle / "model_int8.tflite")
    _, outputs = int8_model.predict("", {_input_alias(int8_model): test_images})
    served = outputs["probabilities"]
    assert served.dtype == np.float32 and served.shape == (len(test_images), 10)
    np.testing.assert_array_equal(served, classifier.predict_proba(test_images))
    np.testing.assert_array_equal(outputs["class_ids"], served.argmax(1))


@pytest.mark.parametrize(
    ("case", "shape", "dtype"),
    [
        ("wrong rank", (2, 28, 28), np.uint8),
        ("wrong dims", (2, 27, 28, 1), np.uint8),
        ("wrong dtype", (2, 28, 28, 1), np.float32),
        ("too many dims", (1,) * 40, np.uint8),
    ],
)
def test_bad_inputs_are_invalid_argument_and_the_model_keeps_serving(
    int8_model, test_images, case, shape, dtype
) -> None:
    alias = _input_alias(int8_model)
    error = _status(int8_model.predict, "", {alias: np.zeros(shape, dtype)})
    assert error.code == Code.INVALID_ARGUMENT, case
    assert alias in error.message or "dimensions" in error.message
    _, outputs = int8_model.predict("", {alias: test_images[:3]})
    assert outputs["probabilities"].shape == (3, 10)


def test_wrong_input_name_is_invalid_argument(int8_model) -> None:
    error = _status(int8_model.predict, "", {"image": np.zeros((1, 28, 28, 1), np.uint8)})
    assert error.code == Code.INVALID_ARGUMENT
    assert error.message.startswith("input size does not match signature")


def test_huge_batch_stops_at_the_deadline(int8_model) -> None:
    # 10**8 images (78 GB) as a broadcast view: it runs in chunks and stops at the deadline.
    rows = 10**8
    huge = np.broadcast_to(np.zeros((1, 28, 28, 1), np.uint8), (rows, 28, 28, 1))
    deadline = time.monotonic() + 0.3
    error = _status(int8_model.predict, "", {_input_alias(int8_model): huge}, deadline=deadline)
    assert error.code == Code.DEADLINE_EXCEEDED
    assert (
        error.message.startswith("Deadline Exceeded after ") and f"of {rows} rows" in error.message
    )


def test_a_shape_the_runtime_refuses_is_internal_and_serving_goes_on(half_plus_two) -> None:
    # [1, 1] is not enforced (TF Serving feeds half_plus_two any shape), but XNNPACK cannot
    # take rank 8: TF Serving's TfLiteSession answers INTERNAL there too.
    error = _status(half_plus_two.predict, "", {"x": np.ones([2] * 8, np.float32)})
    assert error.code == Code.INTERNAL and error.message.startswith("Failed to allocate tensors")
    _, outputs = half_plus_two.predict("", {"x": np.array([4.0], np.float32)})
    assert outputs["y"].tolist() == [4.0]


def test_output_filter_and_unknown_signature(half_plus_two) -> None:
    _, outputs = half_plus_two.predict("", {"x": np.ones(2, np.float32)}, ["y"])
    assert list(outputs) == ["y"]
    error = _status(half_plus_two.predict, "", {"x": np.ones(2, np.float32)}, ["z"])
    assert error.code == Code.INVALID_ARGUMENT
    assert error.message.startswith("output tensor alias not found in signature: z")
    error = _status(half_plus_two.predict, "classify_x_to_y", {"x": np.ones(2, np.float32)})
    assert error.code == Code.FAILED_PRECONDITION
    assert error.message == 'Serving signature key "classify_x_to_y" not found.'


def test_tf_example_apis_fail_tf_servings_signature_checks(half_plus_two) -> None:
    error = _status(half_plus_two.classify, "", [b""])
    assert (error.code, error.message) == (
        Code.INVALID_ARGUMENT,
        "No classification inputs found in SignatureDef.",
    )
    error = _status(half_plus_two.regress, "", [b""], check_method=True)
    assert error.message == (
        "Expected regression signature method_name to be tensorflow/serving/regress. "
        "Was: tensorflow/serving/predict"
    )
    error = _status(half_plus_two.multi_inference, [("missing", PREDICT_METHOD)], [b""])
    assert error.message == "Requested signature not found in model graph: missing"


def test_concurrent_requests_get_their_own_answers(half_plus_two) -> None:
    failures: list[str] = []

    def client(offset: int) -> None:
        for i in range(30):
            values = np.arange(i + 1, dtype=np.float32) + offset
            _, outputs = half_plus_two.predict("", {"x": values})
            if not np.array_equal(outputs["y"], values * 0.5 + 2):
                failures.append(f"client {offset} request {i}")

    threads = [threading.Thread(target=client, args=(1000 * n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads) and failures == []


def test_truncated_model_is_a_load_error(serving_fixtures: Path, tmp_path: Path) -> None:
    content = (serving_fixtures / HALF_PLUS_TWO / TFLITE_FILE).read_bytes()
    (tmp_path / TFLITE_FILE).write_bytes(content[: len(content) // 2])
    with pytest.raises(TfliteLoadError, match="truncated or corrupt"):
        TfliteServable(tmp_path)
    with pytest.raises(TfliteLoadError, match="cannot read"):
        TfliteServable(tmp_path / "missing")


def test_a_model_that_aborts_the_runtime_is_a_load_error(aborting_tflite: Path) -> None:
    # Loaded in this process, the model would abort pytest itself.
    with pytest.raises(TfliteLoadError, match=r"killed the process that loaded it \(SIGABRT\)"):
        TfliteServable(aborting_tflite)


def test_serving_tflite_versions_imports_no_tensorflow(serving_fixtures, exported_bundle):
    # half_plus_two (derived signature) and our export (stored SignatureDefs, flatbuffers).
    script = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from fmnist.serving.server.servables.tflite import TfliteServable\n"
        "model = TfliteServable(Path(sys.argv[1]))\n"
        "_, out = model.predict('', {'x': np.array([1.0, 2.0, 5.0], np.float32)})\n"
        "assert out['y'].tolist() == [2.5, 3.0, 4.5], out\n"
        "model = TfliteServable(Path(sys.argv[2]))\n"
        "_, out = model.predict('', {'images': np.zeros((2, 28, 28, 1), np.uint8)})\n"
        "assert out['probabilities'].shape == (2, 10), out\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow')\n"
        "print('tensorflow modules:', loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(serving_fixtures / HALF_PLUS_TWO), str(exported_bundle)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _with_signature_defs(model: Path, out_dir: Path, signature_defs: dict) -> Path:
    """`model` with TF Serving's `signature_defs_metadata` entry (as TFLite's
    SetSignatureDefMap writes it: a flexbuffer map of serialized SignatureDefs)."""
    from flatbuffers import flexbuffers
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    builder = flexbuffers.Builder()
    with builder.Map():
        for key, proto in signature_defs.items():
            builder.Key(key)
            builder.String(proto.SerializeToString().decode("ascii"))  # small protos are ASCII
    flat = flatbuffer_utils.read_model_from_bytearray(bytearray(model.read_bytes()))
    buffer = schema.BufferT()
    buffer.data = list(builder.Finish())
    flat.buffers.append(buffer)
    metadata = schema.MetadataT()
    metadata.name, metadata.buffer = "signature_defs_metadata", len(flat.buffers) - 1
    flat.metadata.append(metadata)
    out_dir.mkdir(parents=True)
    (out_dir / TFLITE_FILE).write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(flat)))
    return out_dir


def _signature_def(method: str, inputs: dict[str, str], outputs: dict[str, str]):
    from tensorflow.core.protobuf import meta_graph_pb2

    proto = meta_graph_pb2.SignatureDef(method_name=method)
    for field, names in ((proto.inputs, inputs), (proto.outputs, outputs)):
        for alias, name in names.items():
            field[alias].name = name
            field[alias].dtype = DT_FLOAT
            field[alias].tensor_shape.dim.add(size=1)
    return proto


def test_stored_signature_defs_replace_the_derived_one(serving_fixtures, tmp_path) -> None:
    # As tflite_session_test.cc ModelFromLegacyConverterWithSigdef: `x:0` falls back to `x`.
    version = _with_signature_defs(
        serving_fixtures / HALF_PLUS_TWO / TFLITE_FILE,
        tmp_path / "1",
        {
            "serving_default": _signature_def(PREDICT_METHOD, {"in": "x:0"}, {"out": "y:0"}),
            "regress_x_to_y": _signature_def(REGRESS_METHOD, {"inputs": "x"}, {"outputs": "y"}),
        },
    )
    model = TfliteServable(version)
    assert model.signatures["serving_default"] == Signature(
        PREDICT_METHOD,
        inputs={"in": TensorInfo("x", DT_FLOAT, (1,))},
        outputs={"out": TensorInfo("y", DT_FLOAT, (1,))},
    )
    assert model.signatures["regress_x_to_y"].method_name == REGRESS_METHOD
    _, outputs = model.predict("", {"in": np.array([1.0, 2.0, 5.0], np.float32)})
    assert outputs["out"].tolist() == [2.5, 3.0, 4.5]
    # Its `inputs` is the float tensor x: the serialized examples cannot be fed to it.
    error = _status(model.regress, "regress_x_to_y", [b""])
    assert error.code == Code.INTERNAL and error.message.startswith("Failed to")


def test_a_signature_def_naming_an_unknown_tensor_fails_the_load(serving_fixtures, tmp_path):
    version = _with_signature_defs(
        serving_fixtures / HALF_PLUS_TWO / TFLITE_FILE,
        tmp_path / "1",
        {"serving_default": _signature_def(PREDICT_METHOD, {"x": "nope:0"}, {"y": "y"})},
    )
    with pytest.raises(TfliteLoadError, match="references an unknown tensor"):
        TfliteServable(version)


def test_fmnist_serve_answers_the_exported_int8_model_as_the_edge_runner(
    model_server, exported_bundle: Path, test_images: np.ndarray
) -> None:
    # The real server, TF Serving's flags: the version's warm-up records replay on the
    # TFLite model before it is AVAILABLE, then REST answers are the edge runner's, exactly
    # (the int8 model's dequantized scores, and their argmax).
    import requests

    server = model_server(
        "--prefer_tflite_model",
        "--enable_model_warmup=true",
        *("--model_name", "fashion_mnist", "--model_base_path", str(exported_bundle.parent)),
    )
    images = test_images[:200]
    answer = requests.post(
        f"{server.rest_url}/v1/models/fashion_mnist:predict",
        json={"instances": images.tolist()},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    classifier = Classifier(exported_bundle / "model_int8.tflite")
    rows = answer.json()["predictions"]
    served = np.array([row["probabilities"] for row in rows], np.float32)
    np.testing.assert_array_equal(served, classifier.predict_proba(images))
    assert [row["class_ids"] for row in rows] == served.argmax(1).tolist()


def test_fmnist_parity_passes_against_a_tflite_serving_server(
    model_server, exported_bundle: Path, data_dir: Path, tmp_path: Path
) -> None:
    """`fmnist parity --rest --bundle` reads the served int8 scores with the bundle's output
    quantization: it measures what the edge runner measures, and passes."""
    import json

    from fmnist.manifest import load_manifest

    server = model_server(
        "--prefer_tflite_model",
        *("--model_name", "fashion_mnist", "--model_base_path", str(exported_bundle.parent)),
    )
    out = tmp_path / "parity.json"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "fmnist.cli", "parity", "--rest", server.rest_url),
            *("--model-name", "fashion_mnist", "--bundle", str(exported_bundle)),
            *("--data-dir", str(data_dir), "--json", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["name"] == "served model over REST"  # it answers as the SavedModel does
    exported = load_manifest(exported_bundle).tflite("int8").parity
    assert result["agreement"] == exported["agreement"]  # the same int8 answers, exactly
