"""The manifest's typed view: files, TFLite entries, tolerance and the test-label check,
read from a bundle of plain files (no TensorFlow)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from fmnist.dataset import labels_sha256, sha256_file
from fmnist.errors import ManifestError
from fmnist.manifest import REFERENCE_NAME, FileEntry, Manifest, TensorSpec, load_manifest
from fmnist.parity import Tolerance


def _manifest(make_bundle, **changes) -> Manifest:
    manifest = load_manifest(make_bundle())
    return Manifest(bundle_dir=manifest.bundle_dir, data=manifest.data | changes)


def test_files_maps_each_bundle_file_to_its_size_and_checksum(make_bundle) -> None:
    manifest = load_manifest(make_bundle())
    files = manifest.files
    assert set(files) == {"model_int8.tflite", REFERENCE_NAME}
    for relpath, entry in files.items():
        path = manifest.bundle_dir / relpath
        assert entry == FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size)
        assert entry.to_dict() == {"sha256": entry.sha256, "bytes": entry.bytes}


def test_tflite_entry_is_typed_and_carries_its_file_size(make_bundle) -> None:
    manifest = load_manifest(make_bundle())
    model = manifest.tflite("int8")
    assert model.file == "model_int8.tflite"
    assert model.path == manifest.bundle_dir / "model_int8.tflite"
    assert model.bytes == (manifest.bundle_dir / model.file).stat().st_size
    assert model.input == TensorSpec("uint8", (-1, 28, 28, 1), scale=1 / 255, zero_point=0)
    assert model.output.dtype == "int8" and model.output.zero_point == -128
    assert model.metrics == {} and model.parity == {}
    assert manifest.tflite_kinds == ("int8",)


def test_a_missing_tflite_kind_is_a_manifest_error(make_bundle) -> None:
    manifest = load_manifest(make_bundle())
    with pytest.raises(ManifestError, match="no float32 TFLite model in this bundle"):
        manifest.tflite("float32")


def test_tolerance_is_the_recorded_one(make_bundle) -> None:
    manifest = _manifest(make_bundle, tolerance={"max_accuracy_drop_pp": 2.0, "min_agreement": 0.9})
    assert manifest.tolerance == Tolerance(max_accuracy_drop_pp=2.0, min_agreement=0.9)


@pytest.mark.parametrize(("changes", "expected"), [({}, False), ({"flip_average": True}, True)])
def test_flip_average_is_false_unless_recorded(make_bundle, changes, expected) -> None:
    manifest = _manifest(make_bundle, **changes)
    assert ("flip_average" in manifest.data) is bool(changes)  # {}: an older bundle's manifest
    assert manifest.flip_average is expected


def test_scalar_fields(make_bundle, fields) -> None:
    manifest = load_manifest(make_bundle())
    assert manifest.model_name == fields["model_name"]
    assert manifest.model_version == fields["model_version"]
    assert manifest.class_names == fields["class_names"]
    assert manifest.float_metrics == fields["float_metrics"]
    assert manifest.reference.num_examples == fields["reference"]["num_examples"]


def test_labels_matching_the_recorded_checksum_are_accepted(make_bundle, fields) -> None:
    labels = np.arange(50) % 10
    reference = fields["reference"] | {"labels_sha256": labels_sha256(labels)}
    _manifest(make_bundle, reference=reference).check_labels(labels)


def test_other_labels_are_refused(make_bundle, fields) -> None:
    labels = np.arange(50) % 10
    reference = fields["reference"] | {"labels_sha256": labels_sha256(labels)}
    manifest = _manifest(make_bundle, reference=reference)
    with pytest.raises(ManifestError, match=re.escape("the test labels differ")):
        manifest.check_labels(labels[::-1])


def test_a_manifest_without_a_label_checksum_accepts_any_labels(make_bundle, fields) -> None:
    reference = {k: v for k, v in fields["reference"].items() if k != "labels_sha256"}
    _manifest(make_bundle, reference=reference).check_labels(np.zeros(3, dtype=np.uint8))
