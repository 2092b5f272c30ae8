"""The edge runner on image classifiers that are not Fashion-MNIST's: real TFLite models
converted here from a tiny 32x32x3, 5-class Keras model (float32, uint8 and int8 inputs,
one or two outputs), run as bare .tflite files whose tensors say what they take."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist.edge.classifier import Classifier, ModelError
from fmnist.images import load_inputs

COLOUR_SHAPE, COLOUR_CLASSES = (32, 32, 3), 5  # what conftest's colour_models are


def edge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fmnist.edge.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and fragment in errors[0], result.stderr


@pytest.fixture(scope="module")
def colour_images(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Random colour pictures: two PNGs of other sizes and an .npy batch of the model's."""
    folder = tmp_path_factory.mktemp("colour-images")
    rng = np.random.default_rng(3)
    for name, size in (("wide.png", (64, 48)), ("small.png", (20, 20))):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
            folder / name
        )
    batch = rng.integers(0, 256, (6, *COLOUR_SHAPE), dtype=np.uint8)
    np.save(folder / "batch.npy", batch)
    return {"folder": folder, "batch": batch}


def _keras_probabilities(colour_models: dict, images: np.ndarray) -> np.ndarray:
    return colour_models["keras"].predict(images.astype(np.float32) / 255.0, verbose=0)


@pytest.mark.parametrize(
    ("kind", "scaling", "atol", "agreement"),
    [
        ("float32", "unit", 1e-5, 1.0),
        ("uint8", "unit", 0.08, 0.6),  # quantized inputs: read from their range
        ("int8", "unit", 0.08, 0.6),
        ("two_outputs", "model", 1e-5, 1.0),  # plain uint8: the model scales pixels itself
    ],
)
def test_bare_models_answer_like_the_keras_model(
    colour_models: dict,
    colour_images: dict,
    kind: str,
    scaling: str,
    atol: float,
    agreement: float,
) -> None:
    classifier = Classifier(colour_models[kind])
    assert classifier.contract.shape == COLOUR_SHAPE
    assert classifier.class_names == tuple(str(i) for i in range(COLOUR_CLASSES))
    assert classifier.contract.scaling == scaling
    batch = colour_images["batch"]
    probabilities = classifier.predict_proba(batch)
    expected = _keras_probabilities(colour_models, batch)
    assert probabilities.shape == (len(batch), COLOUR_CLASSES)
    np.testing.assert_allclose(probabilities, expected, atol=atol)
    assert np.mean(probabilities.argmax(1) == expected.argmax(1)) >= agreement


def test_classify_a_bare_tflite_with_class_names(colour_models: dict, colour_images: dict):
    folder = colour_images["folder"]
    classes = folder / "classes.txt"
    classes.write_text("circle\nsquare\ntriangle\nstar\nplus\n")
    images = [str(folder / name) for name in ("wide.png", "small.png", "batch.npy")]
    done = edge("classify", str(colour_models["float32"]), *images, "--classes", str(classes))
    done_json = edge(
        "classify", str(colour_models["float32"]), *images, "--classes", str(classes), "--json"
    )
    assert done.returncode == 0 and done_json.returncode == 0, done.stderr + done_json.stderr
    rows = json.loads(done_json.stdout)
    assert len(rows) == 8 and rows[2]["path"].endswith("batch.npy[0]")
    _, expected_images = load_inputs(images, COLOUR_SHAPE)
    expected = _keras_probabilities(colour_models, expected_images)
    names = classes.read_text().split()
    for row, probs in zip(rows, expected, strict=True):
        best = row["predictions"][0]
        assert best["class_id"] == int(probs.argmax())
        assert best["class_name"] == names[best["class_id"]]
    assert f"wide.png: {rows[0]['predictions'][0]['class_name']}" in done.stdout


def test_classify_numbers_classes_without_names(colour_models: dict, colour_images: dict):
    png = str(colour_images["folder"] / "wide.png")
    done = edge("classify", str(colour_models["int8"]), png, "--json", "--top-k", "5")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert sorted(p["class_name"] for p in row["predictions"]) == list("01234")


def test_bench_a_bare_model(colour_models: dict) -> None:
    done = edge("bench", str(colour_models["uint8"]), "--runs", "5", "--batch", "2", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["batch"] == 2


def _not_an_image(path: Path) -> Path:
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 10], tf.float32)])
    def model(x):
        return tf.nn.softmax(x)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([model.get_concrete_function()])
    path.write_bytes(converter.convert())
    return path


def test_bad_models_and_flags_are_one_line_errors(
    colour_models: dict, colour_images: dict, edge_bundle: Path, tmp_path: Path
) -> None:
    png = str(colour_images["folder"] / "wide.png")
    vector = _not_an_image(tmp_path / "vector.tflite")
    assert_one_line_error(
        edge("classify", str(vector), png), "input [1, 10] float32 is not an image"
    )
    three = tmp_path / "three.txt"
    three.write_text("a\nb\nc\n")
    model = str(colour_models["float32"])
    assert_one_line_error(
        edge("classify", model, png, "--classes", str(three)), "each of the 3 classes"
    )
    assert_one_line_error(
        edge("classify", model, png, "--classes", str(tmp_path / "none.txt")), "none.txt"
    )
    assert_one_line_error(
        edge("classify", str(edge_bundle), png, "--scaling", "raw"), "for a bare .tflite"
    )


def test_scaling_flag_changes_what_the_model_is_fed(colour_models: dict, colour_images: dict):
    batch = colour_images["batch"]
    unit = Classifier(colour_models["float32"]).predict_proba(batch)
    raw = Classifier(colour_models["float32"], scaling="raw").predict_proba(batch)
    expected_raw = colour_models["keras"].predict(batch.astype(np.float32), verbose=0)
    np.testing.assert_allclose(raw, expected_raw, atol=1e-5)
    assert not np.allclose(unit, raw, atol=1e-3)


def test_images_of_another_shape_are_refused(colour_models: dict) -> None:
    classifier = Classifier(colour_models["float32"])
    with pytest.raises(Exception, match=r"expected uint8 images \[N, 32, 32, 3\]"):
        classifier.predict_proba(np.zeros((1, 28, 28, 1), np.uint8))
    with pytest.raises(ModelError, match="classes"):
        Classifier(colour_models["float32"], class_names=("a", "b"))


NAMES = ("circle", "square", "triangle", "star", "plus")


def _tensor(details: dict) -> dict:
    scale, zero_point = details["quantization"]
    shape = [-1, *(int(d) for d in details["shape"][1:])]
    spec = {"dtype": np.dtype(details["dtype"]).name, "shape": shape}
    return {**spec, "scale": float(scale), "zero_point": int(zero_point)} if scale else spec


def _tflite_entry(path: Path) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    return {"file": path.name, "input": _tensor(inp), "output": _tensor(out)}


@pytest.fixture(scope="module")
def colour_bundle(colour_models: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A bundle of the colour model (int8 with uint8 input, float32), its manifest's input
    contract and float reference outputs, and the .npz dataset they were computed on."""
    from fmnist.contract import InputContract
    from fmnist.dataset import labels_sha256
    from fmnist.manifest import REFERENCE_NAME, write_manifest

    root = tmp_path_factory.mktemp("colour-bundle")
    bundle = root / "colour" / "1"
    bundle.mkdir(parents=True)
    for kind, name in (("uint8", "model_int8.tflite"), ("float32", "model_float32.tflite")):
        (bundle / name).write_bytes(colour_models[kind].read_bytes())
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (90, *COLOUR_SHAPE), dtype=np.uint8)
    reference = _keras_probabilities(colour_models, images)
    labels = reference.argmax(1)
    np.savez(
        root / "data.npz",
        x_train=images[60:],
        y_train=labels[60:],
        x_test=images[:60],
        y_test=labels[:60],
        class_names=np.array(NAMES),
    )
    np.savez_compressed(bundle / REFERENCE_NAME, probabilities=reference[:60])
    spec = {"dtype": "uint8", "shape": [-1, *COLOUR_SHAPE]}
    write_manifest(
        bundle,
        {
            "model_name": "colour",
            "model_version": 1,
            "created_at": "2026-01-01T00:00:00+00:00",
            "producer": {"fmnist-deploy": "test"},
            "class_names": list(NAMES),
            "input": InputContract(*COLOUR_SHAPE, NAMES).to_dict(),
            "saved_model": {
                "signature_name": "serving_default",
                "inputs": {"images": spec},
                "outputs": {"probabilities": {"dtype": "float32", "shape": [-1, 5]}},
            },
            "float_metrics": {"accuracy": 1.0, "per_class": []},
            "tflite": {
                "int8": _tflite_entry(bundle / "model_int8.tflite"),
                "float32": _tflite_entry(bundle / "model_float32.tflite"),
            },
            "tolerance": {"max_accuracy_drop_pp": 50, "min_agreement": 0.5},
            "reference": {
                "file": REFERENCE_NAME,
                "split": "test",
                "num_examples": 60,
                "labels_sha256": labels_sha256(labels[:60]),
            },
        },
    )
    return {"bundle": bundle, "data": root / "data.npz"}


@pytest.mark.parametrize("kind", ["int8", "float32"])
def test_parity_of_a_bundle_of_another_shape(colour_bundle: dict, tmp_path: Path, kind: str):
    out = tmp_path / "parity.json"
    done = edge(
        "parity",
        str(colour_bundle["bundle"]),
        "--data-dir",
        str(colour_bundle["data"]),
        "--kind",
        kind,
        "--json",
        str(out),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["num_examples"] == 60 and result["reference_accuracy"] == 1.0
    assert [row["class_name"] for row in result["per_class"]] == list(NAMES)
    if kind == "float32":
        assert result["agreement"] == 1.0 and result["max_abs_prob_diff"] < 1e-5


def test_classify_and_bench_a_bundle_of_another_shape(colour_bundle: dict, colour_images):
    png = str(colour_images["folder"] / "wide.png")
    done = edge("classify", str(colour_bundle["bundle"]), png, "--json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert row["predictions"][0]["class_name"] in NAMES
    bench = edge("bench", str(colour_bundle["bundle"]), "--runs", "5", "--json")
    assert bench.returncode == 0, bench.stderr


def test_parity_refuses_data_of_another_shape(colour_bundle: dict, data_dir: Path) -> None:
    done = edge("parity", str(colour_bundle["bundle"]), "--data-dir", str(data_dir))
    assert_one_line_error(done, "not the data of this bundle")


def test_parity_reads_a_folder_test_tree_without_scikit_learn(tmp_path: Path, python_without):
    """A device's or client's install has no scikit-learn: a folder dataset's test/ tree is
    read as open_dataset reads it (same order, same pixels) without the train split."""
    pytest.importorskip("sklearn")  # the expected side opens the whole dataset
    from fmnist.data import open_dataset

    rng = np.random.default_rng(3)
    for split, count in (("train", 6), ("test", 4)):
        for name in ("cats", "dogs"):
            folder = tmp_path / "pets" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    expected = open_dataset(tmp_path / "pets", image_size=(12, 10)).load("test")
    done = python_without(
        f"""
        import numpy as np
        from fmnist.contract import InputContract
        from fmnist.parity_data import _open
        contract = InputContract(12, 10, 3, ("cats", "dogs"))
        _, shape, classes, labels, batches = _open({str(tmp_path / "pets")!r}, contract)
        images = np.concatenate(list(batches(3)))
        np.save({str(tmp_path / "images.npy")!r}, images)
        print(list(shape), classes, list(labels))
        """,
        blocked=("sklearn",),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == f"[12, 10, 3] 2 {list(expected.labels)}"
    np.testing.assert_array_equal(np.load(tmp_path / "images.npy"), expected.images)
