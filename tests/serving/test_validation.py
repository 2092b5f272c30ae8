"""Requests that used to abort `fmnist serve` (issue 10) are refused with INVALID_ARGUMENT
against a real server; zero-image batches, chunked large batches and deadlines."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from fmnist.serving.server.servables import validation
from fmnist.serving.server.servables.saved_model import SavedModelServable
from fmnist.serving.wire.status import Code, StatusError

pytestmark = pytest.mark.integration

IMAGES = np.random.default_rng(1).integers(0, 256, size=(600, 28, 28), dtype=np.uint8)


def _config(fmnist_dir: Path, serving_fixtures: Path) -> str:
    return (
        "model_config_list {\n"
        f'  config {{ name: "fmnist" base_path: "{fmnist_dir}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "half_plus_two" base_path: '
        f'"{serving_fixtures / "saved_model_half_plus_two_cpu"}" model_platform: "tensorflow" }}\n'
        "}\n"
    )


@pytest.fixture(scope="module")
def server(fmnist_models, serving_fixtures, session_model_server, tmp_path_factory):
    """One `fmnist serve` with our signature (fmnist) and TF Serving's half_plus_two."""
    root = tmp_path_factory.mktemp("validation")
    (root / "fmnist").mkdir()
    (root / "fmnist" / "1").symlink_to(fmnist_models[3], target_is_directory=True)
    config = root / "models.config"
    config.write_text(_config(root / "fmnist", serving_fixtures))
    return session_model_server("--model_config_file", str(config))


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(
        server.grpc_target, options=[("grpc.max_send_message_length", -1)]
    ) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def version(fmnist_models):
    """The same SavedModel loaded in this process, as the server loads it."""
    loaded = SavedModelServable(fmnist_models[3])
    yield loaded
    loaded.close()


def images_request(tensor: tensor_pb2.TensorProto, model: str = "fmnist"):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["images" if model == "fmnist" else "x"].CopyFrom(tensor)
    return request


def uint8_tensor(dims: list[int], content: bytes | None = None) -> tensor_pb2.TensorProto:
    """A DT_UINT8 TensorProto of `dims`, zero-filled content unless given."""
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8)
    for size in dims:
        tensor.tensor_shape.dim.add(size=size)
    tensor.tensor_content = bytes(int(np.prod(dims))) if content is None else content
    return tensor


def rpc_code(stub, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(request, timeout=60)
    return caught.value.code(), caught.value.details()


def assert_serving(server, stub) -> None:
    """The process is alive and still answers a good request."""
    assert server.process.poll() is None, server.log()[-2000:]
    response = stub.Predict(images_request(uint8_tensor([1, 28, 28])), timeout=60)
    assert list(response.outputs["class_ids"].int64_val) == [3]


@pytest.mark.parametrize(
    "body",
    [
        {"inputs": []},
        {"inputs": [0]},
        {"inputs": [[]]},
        {"instances": [[]]},
        {"instances": [[0] * 784]},
        {"instances": [0] * 1_000_000},
        {"instances": [[[[0]] * 28] * 28]},  # NHWC
    ],
    ids=[
        "inputs-empty",
        "inputs-0",
        "inputs-[[]]",
        "instances-[[]]",
        "flat-image",
        "1e6-ints",
        "nhwc",
    ],
)
def test_rest_bodies_that_aborted_the_server_are_400(server, stub, body):
    response = requests.post(f"{server.rest_url}/v1/models/fmnist:predict", json=body, timeout=120)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert "signature serving_default input 'images' shape is wrong, expected: [?,28,28]" in error
    assert_serving(server, stub)


@pytest.mark.parametrize("rank", [0, 1, 2, 4, 32])
def test_grpc_images_of_another_rank_are_invalid_argument_naming_the_shapes(server, stub, rank):
    dims = [1] * rank if rank != 4 else [1, 28, 28, 1]
    code, details = rpc_code(stub, images_request(uint8_tensor(dims)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 'images' shape is wrong, expected: [?,28,28], actual: [" in details
    assert_serving(server, stub)


@pytest.mark.parametrize("rank", [33, 40, 70, 300])
def test_grpc_tensors_of_more_than_32_dimensions_are_invalid_argument(server, stub, rank):
    code, details = rpc_code(stub, images_request(uint8_tensor([1] * rank)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"Shape has {rank} dimensions which is over the limit of 32" in details
    assert_serving(server, stub)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "do not fill shape"), (bytes(784), "tensor_content holds 784 bytes")],
    ids=["no-content", "one-image-of-content"],
)
def test_a_huge_declared_shape_is_a_content_mismatch_before_any_allocation(
    server, stub, content, message
):
    tensor = uint8_tensor([10**9, 28, 28], content)
    code, details = rpc_code(stub, images_request(tensor))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in details
    assert_serving(server, stub)


def test_a_zero_dimension_next_to_huge_ones_is_invalid_argument(server, stub):
    code, details = rpc_code(stub, images_request(uint8_tensor([0, 2**40, 2**40], b"")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "is too large" in details
    assert_serving(server, stub)


def test_a_zero_image_batch_returns_empty_outputs(stub):
    response = stub.Predict(images_request(uint8_tensor([0, 28, 28], b"")), timeout=60)
    probabilities = tf.make_ndarray(response.outputs["probabilities"])
    class_ids = tf.make_ndarray(response.outputs["class_ids"])
    assert (probabilities.shape, probabilities.dtype) == ((0, 10), np.float32)
    assert (class_ids.shape, class_ids.dtype) == ((0,), np.int64)


def test_a_batch_larger_than_a_chunk_matches_the_model_called_in_process(stub, fmnist_models):
    assert len(IMAGES) > validation.chunk_rows(len(IMAGES), IMAGES.nbytes)
    response = stub.Predict(images_request(tf.make_tensor_proto(IMAGES)), timeout=120)
    reference = tf.saved_model.load(str(fmnist_models[3])).signatures["serving_default"]
    expected = reference(images=tf.constant(IMAGES))
    np.testing.assert_array_equal(
        tf.make_ndarray(response.outputs["probabilities"]), expected["probabilities"].numpy()
    )
    np.testing.assert_array_equal(
        tf.make_ndarray(response.outputs["class_ids"]), expected["class_ids"].numpy()
    )


def test_per_element_signatures_still_take_any_shape_as_tf_serving_does(stub):
    # half_plus_two declares x [-1, 1]; TF Serving feeds a flat list of any length.
    request = images_request(
        tf.make_tensor_proto(np.arange(600, dtype=np.float32)), "half_plus_two"
    )
    response = stub.Predict(request, timeout=60)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), np.arange(600) / 2 + 2)


def test_a_chunked_run_stops_at_a_passed_deadline(version):
    with pytest.raises(StatusError) as caught:
        version.predict("", {"images": IMAGES}, deadline=time.monotonic() - 1)
    assert caught.value.code == Code.DEADLINE_EXCEEDED


def test_a_run_within_its_deadline_answers(version):
    _, outputs = version.predict("", {"images": IMAGES}, deadline=time.monotonic() + 600)
    assert outputs["probabilities"].shape == (len(IMAGES), 10)


@pytest.mark.parametrize(
    ("method", "signature"), [("classify", "classify_x_to_y"), ("regress", "regress_x_to_y")]
)
def test_classify_and_regress_stop_at_a_passed_deadline(serving_fixtures, method, signature):
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    example.features.feature["x"].float_list.value.append(1.0)
    half_plus_two = SavedModelServable(
        serving_fixtures / "saved_model_half_plus_two_cpu" / "00000123"
    )
    try:
        call = getattr(half_plus_two, method)
        _, result = call(signature, [example.SerializeToString()] * 3)
        assert (
            len(getattr(result, "classifications" if method == "classify" else "regressions")) == 3
        )
        with pytest.raises(StatusError) as caught:
            call(signature, [example.SerializeToString()] * 3, deadline=time.monotonic() - 1)
        assert caught.value.code == Code.DEADLINE_EXCEEDED
    finally:
        half_plus_two.close()


# --- TensorProto -> numpy: checked before anything is allocated ------------------------------


@pytest.mark.parametrize(
    ("dims", "fields", "message"),
    [
        ([10**9, 28, 28], {}, "0 values of DT_UINT8 do not fill shape [1000000000,28,28]"),
        ([10**9, 28, 28], {"int_val": [7]}, "limited to 1048576 bytes"),
        ([10**9, 28, 28], {"tensor_content": bytes(784)}, "tensor_content holds 784 bytes"),
        ([2], {"int_val": [1, 2, 3]}, "tensor has 3 values but shape [2]"),
        ([1] * 70, {}, "Shape has 70 dimensions which is over the limit of 32"),
        ([0, 2**62, 2**62], {}, "is too large"),
        ([3, -1], {}, "has negative dimensions"),
    ],
)
def test_to_ndarray_refuses_a_bad_tensor_naming_it(dims, fields, message):
    from fmnist.serving.wire import tensor_proto

    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8, **fields)
    for size in dims:
        proto.tensor_shape.dim.add(size=size)
    with pytest.raises(StatusError) as caught:
        tensor_proto.to_ndarray(proto, 1 << 20, name="images")
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.message.startswith("tensor parsing error: images: ")
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("fields", "expected"),
    [({}, [0, 0, 0]), ({"int_val": [5]}, [5, 5, 5]), ({"int_val": [1, 2, 3]}, [1, 2, 3])],
)
def test_to_ndarray_fills_short_value_lists_as_tf_does(fields, expected):
    from fmnist.serving.wire import tensor_proto

    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8, **fields)
    proto.tensor_shape.dim.add(size=3)
    assert tensor_proto.to_ndarray(proto, 1 << 20).tolist() == expected


def test_a_scalar_string_result_is_an_array(version):
    _, outputs = version.predict("echo", {"blobs": np.array(b"abc", dtype=object)})
    assert outputs["echo_bytes"].shape == () and outputs["echo_bytes"][()] == b"abc"
    assert outputs["length"].shape == () and outputs["length"].dtype == np.int32


def test_a_string_tensor_of_33_dimensions_to_a_lenient_signature_is_refused(server, stub):
    # `echo` declares blobs [-1] (no dimension checked); TF segfaulted fetching rank 33 strings.
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "fmnist"
    request.model_spec.signature_name = "echo"
    blobs = request.inputs["blobs"]
    blobs.dtype = types_pb2.DT_STRING
    for _ in range(33):
        blobs.tensor_shape.dim.add(size=1)
    blobs.string_val.append(b"a")
    code, details = rpc_code(stub, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Shape has 33 dimensions which is over the limit of 32" in details
    assert_serving(server, stub)
