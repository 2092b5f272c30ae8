"""The TFLite classifier on a real exported bundle: quantization handled, checksums enforced."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from fmnist import dataset
from fmnist.contract import FASHION_MNIST
from fmnist.edge.classifier import Classifier, ModelError, resolve_model
from fmnist.errors import ManifestError
from fmnist.manifest import load_manifest


@pytest.fixture(scope="module")
def test_images(data_dir: Path) -> dataset.Split:
    return dataset.load_test(data_dir)


def test_int8_model_uses_its_own_quantization(edge_bundle: Path, test_images) -> None:
    manifest = load_manifest(edge_bundle)
    resolved = resolve_model(edge_bundle)
    classifier = Classifier(resolved.path, contract=resolved.contract)
    spec = manifest.tflite("int8")
    assert classifier.input_quant.dtype.name == spec.input.dtype
    assert classifier.input_quant.scale == pytest.approx(spec.input.scale)
    assert classifier.input_quant.zero_point == spec.input.zero_point
    assert classifier.output_quant.dtype == np.int8
    assert classifier.output_quant.scale == pytest.approx(spec.output.scale)

    probs = classifier.predict_proba(test_images.images[:500])
    assert probs.shape == (500, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.05)  # int8 softmax steps of 1/256
    reference = manifest.load_reference()[:500]
    agreement = np.mean(probs.argmax(1) == reference.argmax(1))
    assert agreement > 0.95
    assert np.abs(probs - reference).max() < 0.2


def test_float_model_matches_the_reference_closely(edge_bundle: Path, test_images) -> None:
    resolved = resolve_model(edge_bundle, "float32")
    classifier = Classifier(resolved.path)
    assert classifier.input_quant.quantized is False
    probs = classifier.predict_proba(test_images.images[:300])
    np.testing.assert_allclose(probs, load_manifest(edge_bundle).load_reference()[:300], atol=1e-4)


def test_batches_threads_and_single_images_agree(edge_bundle: Path, test_images) -> None:
    path = resolve_model(edge_bundle).path
    images = test_images.images[:130]
    whole = Classifier(path, num_threads=2).predict_proba(images, batch_size=1000)
    chunked = Classifier(path, num_threads=1).predict_proba(images, batch_size=32)
    single = np.concatenate(
        [Classifier(path).predict_proba(images[i : i + 1]) for i in range(0, 130, 13)]
    )
    np.testing.assert_allclose(whole, chunked, atol=1 / 128)
    np.testing.assert_allclose(whole[::13], single, atol=1 / 128)
    assert np.mean(whole.argmax(1) == chunked.argmax(1)) >= 0.99
    four_d = Classifier(path).predict_proba(images[:, :, :, None], batch_size=1000)
    np.testing.assert_array_equal(four_d, whole)


def _copy_bundle(bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / bundle.name
    shutil.copytree(bundle, copy)
    return copy


def test_tampered_model_is_refused(edge_bundle: Path, tmp_path: Path) -> None:
    copy = _copy_bundle(edge_bundle, tmp_path)
    model = resolve_model(copy).path
    raw = bytearray(model.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    model.write_bytes(bytes(raw))
    with pytest.raises(ManifestError, match=r"SHA-256 .* does not match"):
        resolve_model(copy)
    with pytest.raises(ManifestError, match="does not match"):
        resolve_model(model)  # the file itself, found inside its bundle, is checked too


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a TFLite model"),
        (b"\x00" * 4 + b"TFL3" + b"\x00" * 8, "cannot load it"),
        (b"PK\x03\x04 a zip, not a model", "not a TFLite model"),
    ],
)
def test_broken_model_files_are_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        Classifier(resolve_model(path).path)


@pytest.mark.parametrize("kind", ["int8", "float32"])
@pytest.mark.parametrize("keep", [0.01, 0.5, 0.99])
def test_truncated_model_is_a_clear_error(
    edge_bundle: Path, tmp_path: Path, kind: str, keep: float
) -> None:
    # tflite-runtime 2.14 does not verify models and crashes on these: we must catch them.
    content = resolve_model(edge_bundle, kind).path.read_bytes()
    path = tmp_path / "truncated.tflite"
    path.write_bytes(content[: int(len(content) * keep)])
    with pytest.raises(ModelError, match=r"truncated\.tflite: (truncated or corrupt|not a)"):
        Classifier(path)


def _foreign_tflite(path: Path, input_shape: list[int], outputs: int) -> Path:
    """A real TFLite model that is not a Fashion-MNIST classifier (needs TensorFlow)."""
    tf = pytest.importorskip("tensorflow")

    @tf.function(input_signature=[tf.TensorSpec(input_shape, tf.float32)])
    def model(x):
        return tf.nn.softmax(tf.reshape(x, [input_shape[0], -1])[:, :outputs])

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [model.get_concrete_function()], model
    )
    path.write_bytes(converter.convert())
    return path


@pytest.mark.parametrize(
    ("input_shape", "outputs", "contract", "message"),
    [
        ([1, 10], 10, None, r"input \[1, 10\] float32 is not an image"),
        ([1, 8, 8, 2], 2, None, r"input \[1, 8, 8, 2\] float32 is not an image"),
        ([1, 32, 32, 3], 10, FASHION_MNIST, r"takes 32x32x3 images, but its contract says 28x28x1"),
        ([1, 28, 28, 1], 12, FASHION_MNIST, r"output shape \[1, 12\] does not give one score"),
        ([1, 28, 28, 1], 1, None, r"outputs \[1, 1\] float32 are not class scores"),
    ],
)
def test_a_model_that_is_no_image_classifier_or_not_its_contracts_is_refused(
    tmp_path: Path, input_shape: list[int], outputs: int, contract, message: str
) -> None:
    path = _foreign_tflite(tmp_path / "other.tflite", input_shape, outputs)
    with pytest.raises(ModelError, match=message):
        Classifier(path, contract=contract)
