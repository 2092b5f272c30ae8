"""The clients against a real `fmnist serve` on loopback serving a model that is not
Fashion-MNIST's: a tiny 32x32x3, 5-class SavedModel saved here with the exported
signature (uint8 [-1, 32, 32, 3] `images` -> `probabilities`, `class_ids`), a bundle
around it (manifest with its input contract, float reference outputs) and its .npz dataset.
The clients read what to send from the served model's metadata, never from a constant."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist.contract import InputContract
from fmnist.dataset import labels_sha256
from fmnist.images import load_inputs
from fmnist.manifest import REFERENCE_NAME, write_manifest
from fmnist.serving.client import GrpcClient, RestClient

SHAPE, NAMES = (32, 32, 3), ("red", "green", "blue", "grey", "dark")
CONTRACT = InputContract(*SHAPE, NAMES)
TEST_IMAGES = 60


def _colour_model(export_dir: Path) -> None:
    """Mean colour -> logits: a deterministic classifier of the images' colour."""
    import tensorflow as tf

    weights = np.array([[8, -4, -4, 2, -6], [-4, 8, -4, 2, -6], [-4, -4, 8, 2, -6]], np.float32)

    class Model(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weights = tf.Variable(weights)
            self.bias = tf.Variable([0, 0, 0, -1, 3], dtype=tf.float32)

        @tf.function(input_signature=[tf.TensorSpec([None, *SHAPE], tf.uint8, name="images")])
        def serve(self, images):
            means = tf.reduce_mean(tf.cast(images, tf.float32) / 255.0, axis=[1, 2])
            probabilities = tf.nn.softmax(means @ self.weights + self.bias)
            return {"probabilities": probabilities, "class_ids": tf.argmax(probabilities, 1)}

    model = Model()
    tf.saved_model.save(model, str(export_dir), signatures={"serving_default": model.serve})


def _probabilities(bundle: Path, images: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    serve = tf.saved_model.load(str(bundle)).signatures["serving_default"]
    return serve(images=tf.constant(images))["probabilities"].numpy()


def _manifest_fields(num_examples: int, labels: np.ndarray) -> dict:
    spec = {"dtype": "uint8", "shape": [-1, *SHAPE]}
    return {
        "model_name": "colour",
        "model_version": 1,
        "created_at": "2026-01-01T00:00:00+00:00",
        "producer": {"fmnist-deploy": "test"},
        "class_names": list(NAMES),
        "input": CONTRACT.to_dict(),
        "saved_model": {
            "signature_name": "serving_default",
            "inputs": {"images": spec},
            "outputs": {"probabilities": {"dtype": "float32", "shape": [-1, len(NAMES)]}},
        },
        "float_metrics": {"accuracy": 1.0, "per_class": []},
        "tflite": {  # not loaded by the clients: a placeholder the schema asks for
            "int8": {
                "file": "model_int8.tflite",
                "input": {
                    "dtype": "uint8",
                    "shape": [-1, *SHAPE],
                    "scale": 1 / 255,
                    "zero_point": 0,
                },
                "output": {"dtype": "int8", "shape": [-1, 5], "scale": 1 / 256, "zero_point": -128},
            }
        },
        "tolerance": {"max_accuracy_drop_pp": 0.5, "min_agreement": 0.99},
        "reference": {
            "file": REFERENCE_NAME,
            "split": "test",
            "num_examples": num_examples,
            "labels_sha256": labels_sha256(labels),
        },
    }


@pytest.fixture(scope="module")
def colour(tmp_path_factory: pytest.TempPathFactory, session_model_server) -> dict:
    """{server, bundle, data}: the colour model served as `colour` version 1 (its bundle
    directory), and an .npz dataset whose test labels the reference outputs are for."""
    root = tmp_path_factory.mktemp("colour")
    bundle = root / "models" / "colour" / "1"
    _colour_model(bundle)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (TEST_IMAGES + 20, *SHAPE), dtype=np.uint8)
    reference = _probabilities(bundle, images)
    labels = reference.argmax(1).astype(np.int64)
    labels[:3] = (labels[:3] + 1) % len(NAMES)  # the float model is not always right
    data = root / "colour.npz"
    np.savez(
        data,
        x_train=images[TEST_IMAGES:],
        y_train=labels[TEST_IMAGES:],
        x_test=images[:TEST_IMAGES],
        y_test=labels[:TEST_IMAGES],
        class_names=np.array(NAMES),
    )
    np.savez_compressed(bundle / REFERENCE_NAME, probabilities=reference[:TEST_IMAGES])
    (bundle / "model_int8.tflite").write_bytes(b"\0\0\0\0TFL3 placeholder")
    write_manifest(bundle, _manifest_fields(TEST_IMAGES, labels[:TEST_IMAGES]))
    server = session_model_server("--model_name", "colour", "--model_base_path", str(bundle.parent))
    return {"server": server, "bundle": bundle, "data": data, "images": images[:TEST_IMAGES]}


def _clients(server) -> list:
    return [GrpcClient(server.grpc_target, "colour"), RestClient(server.rest_url, "colour")]


def test_clients_read_the_image_input_from_metadata(colour: dict) -> None:
    for client in _clients(colour["server"]):
        with client:
            wanted = client.image_input()
            assert wanted.image_shape() == SHAPE and wanted.rank == 4, client.api


def test_clients_send_colour_images_of_any_size(colour: dict) -> None:
    images = colour["images"][:7]
    expected = _probabilities(colour["bundle"], images)
    for client in _clients(colour["server"]):
        with client:
            prediction = client.predict(images, batch_size=3)
        np.testing.assert_allclose(prediction.probabilities, expected, atol=1e-6)
        np.testing.assert_array_equal(prediction.class_ids, expected.argmax(1))
        assert prediction.model_version == 1, client.api


def _fmnist(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fmnist.cli", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("api", ["--grpc", "--rest"])
def test_predict_resizes_files_to_the_served_signature(
    colour: dict, tmp_path: Path, api: str
) -> None:
    server = colour["server"]
    paths = []
    for i, colour_value in enumerate([(250, 10, 10), (10, 10, 250), (10, 10, 10)]):
        path = tmp_path / f"picture{i}.png"
        Image.new("RGB", (64 + 16 * i, 48), colour_value).save(path)
        paths.append(str(path))
    endpoint = server.grpc_target if api == "--grpc" else server.rest_url
    common = (api, endpoint, "--model-name", "colour", "--json", *paths)
    numbered = _fmnist("predict", *common)
    named = _fmnist("predict", *common, "--bundle", str(colour["bundle"]))
    assert numbered.returncode == 0 and named.returncode == 0, numbered.stderr + named.stderr
    _, images = load_inputs(paths, SHAPE)
    expected = _probabilities(colour["bundle"], images).argmax(1)
    for output, names in ((numbered.stdout, [str(i) for i in range(5)]), (named.stdout, NAMES)):
        best = [row["predictions"][0] for row in json.loads(output)]
        assert [b["class_id"] for b in best] == expected.tolist()
        assert [b["class_name"] for b in best] == [names[i] for i in expected]
    assert [NAMES[i] for i in expected] == ["red", "blue", "dark"]


@pytest.mark.parametrize("api", ["--grpc", "--rest"])
def test_served_parity_against_a_bundle_of_another_shape(
    colour: dict, tmp_path: Path, api: str
) -> None:
    server = colour["server"]
    endpoint = server.grpc_target if api == "--grpc" else server.rest_url
    out = tmp_path / "parity.json"
    done = _fmnist(
        "parity",
        *(api, endpoint, "--model-name", "colour", "--bundle", str(colour["bundle"].parent)),
        *("--data-dir", str(colour["data"]), "--batch-size", "16", "--json", str(out)),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["num_examples"] == TEST_IMAGES and result["agreement"] == 1.0
    assert result["reference_accuracy"] == pytest.approx(1 - 3 / TEST_IMAGES)
    assert [row["class_name"] for row in result["per_class"]] == list(NAMES)
    assert result["details"]["answered_version"] == 1


def test_served_parity_refuses_data_of_another_bundle(colour: dict, data_dir: Path) -> None:
    server = colour["server"]
    done = _fmnist(
        "parity",
        *("--grpc", server.grpc_target, "--model-name", "colour"),
        *("--bundle", str(colour["bundle"]), "--data-dir", str(data_dir)),
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "28x28x1" in line and "32x32x3" in line and "--data-dir" in line
