"""Comparing two versions from their bundles alone: test-set figures from the manifests,
agreement from the reference outputs, bundles of other test sets refused, a first version
judged on absolute limits, and the blessing that records the verdict without touching the
bundle's checksums."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fmnist.errors import ManifestError, UserError
from fmnist.manifest import (
    BLESSING_NAME,
    file_entries,
    load_manifest,
)
from fmnist.rollout.blessing import read_blessing
from fmnist.rollout.compare import compare_versions, load_bundle, resolve_baseline
from fmnist.rollout.thresholds import (
    DEFAULT_THRESHOLDS,
    MetricThreshold,
    ValueThreshold,
)


def compared(base: Path, candidate: int, baseline: int | None, **options: Any):
    model_dir = base / "fashion_mnist"
    old = load_bundle(model_dir, baseline) if baseline is not None else None
    return compare_versions(
        load_bundle(model_dir, candidate),
        old,
        baseline_source=options.pop("source", f"--baseline {baseline}"),
        **options,
    )


def test_an_equal_version_passes_with_full_agreement(make_version) -> None:
    base = make_version(1).parents[1]
    make_version(2)
    comparison = compared(base, 2, 1)
    assert comparison.passed and comparison.exit_code == 0
    assert comparison.test_set["agreement"] == 1.0 and comparison.test_set["changed_answers"] == 0
    assert {c.metric for c in comparison.checks} >= {"accuracy", "class_recall[class3]"}


def test_an_accuracy_drop_beyond_half_a_point_fails(make_version) -> None:
    base = make_version(1, accuracy=0.90).parents[1]
    make_version(2, accuracy=0.89)
    comparison = compared(base, 2, 1)
    assert comparison.exit_code == 1
    assert comparison.failures == [
        "accuracy changed -0.01 (0.9 -> 0.89), beyond -0.005 (higher is better)"
    ]


def test_a_class_that_collapses_is_named(make_version) -> None:
    base = make_version(1).parents[1]
    make_version(2, recall=[0.9] * 7 + [0.8] + [0.9] * 2)
    (failure,) = compared(base, 2, 1).failures
    assert failure.startswith("class_recall[class7] changed -0.1 (0.9 -> 0.8)")


def test_agreement_comes_from_the_reference_outputs(make_version) -> None:
    base = make_version(1).parents[1]
    top = np.arange(50) % 10
    top[:5] = (top[:5] + 1) % 10
    make_version(2, top=top)
    strict = {"agreement": MetricThreshold(value=ValueThreshold(lower_bound=0.95))}
    comparison = compared(base, 2, 1, thresholds=strict)
    assert comparison.test_set["agreement"] == 0.9 and comparison.test_set["changed_answers"] == 5
    assert comparison.failures == ["agreement 0.9 is below 0.95"]


def test_a_first_version_is_judged_on_absolute_limits_alone(make_version) -> None:
    base = make_version(1, accuracy=0.5).parents[1]
    source = "no baseline: label 'stable' names no version"
    comparison = compared(base, 1, None, source=source)
    assert comparison.passed and comparison.baseline is None
    assert (
        comparison.notes[0] == f"{source}: judged on absolute limits alone (no change thresholds)"
    )
    floor = {"accuracy": MetricThreshold(value=ValueThreshold(lower_bound=0.6))}
    assert compared(base, 1, None, source=source, thresholds=floor).failures == [
        "accuracy 0.5 is below 0.6"
    ]


@pytest.mark.parametrize(
    ("candidate_sha", "message"),
    [
        ("1" * 64, "were measured on different test sets (labels SHA-256 111111111111..."),
        (None, "records no test labels checksum"),
    ],
    ids=["other labels", "no checksum"],
)
def test_bundles_of_other_test_sets_are_refused(make_version, candidate_sha, message) -> None:
    base = make_version(1).parents[1]
    make_version(2, labels_sha=candidate_sha)
    with pytest.raises(UserError) as raised:
        compared(base, 2, 1)
    assert message in str(raised.value) and raised.value.exit_code == 2


def test_a_manifest_without_per_class_figures_is_refused(make_version) -> None:
    base = make_version(1).parents[1]
    directory = make_version(2)
    data = json.loads((directory / "manifest.json").read_text())
    data["float_metrics"].pop("per_class")
    (directory / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="float_metrics has no per-class figures"):
        compared(base, 2, 1)


def test_a_damaged_bundle_is_refused_before_anything_is_compared(make_version) -> None:
    base = make_version(1).parents[1]
    (make_version(2) / "model_int8.tflite").write_bytes(b"altered")
    with pytest.raises(ManifestError, match="does not match the manifest"):
        compared(base, 2, 1)


def test_traffic_thresholds_wait_for_logs(make_version) -> None:
    base = make_version(1).parents[1]
    make_version(2)
    comparison = compared(base, 2, 1, thresholds=DEFAULT_THRESHOLDS)
    assert "no logged traffic given (--logs): traffic thresholds not applied" in comparison.notes
    assert not any(c.metric.startswith("traffic") for c in comparison.checks)


def test_the_baseline_is_what_the_label_names(make_version) -> None:
    base = make_version(1).parents[1]
    assert resolve_baseline(base, "fashion_mnist", "stable")[0] is None
    (base / "models.config").write_text(
        "model_config_list { config { name: 'fashion_mnist' base_path: '/m' "
        "version_labels { key: 'stable' value: 1 } } }"
    )
    version, source = resolve_baseline(base, "fashion_mnist", "stable")
    assert version == 1 and source == f"label stable in {base / 'models.config'}"
    assert resolve_baseline(base, "fashion_mnist", "canary")[1].startswith(
        "no baseline: label 'canary' names no version"
    )


# --- the blessing beside the bundle ---------------------------------------------------------


def test_a_blessing_leaves_the_bundle_verifiable(make_version, bless) -> None:
    directory = make_version(2)
    bless(directory)
    manifest = load_manifest(directory)
    manifest.verify()  # as fmnist-edge and fmnist parity do
    assert BLESSING_NAME not in manifest.files
    assert BLESSING_NAME not in file_entries(directory)
    assert read_blessing(directory).blessed


def test_a_manifest_that_lists_the_blessing_is_refused(make_version) -> None:
    directory = make_version(2)
    data = json.loads((directory / "manifest.json").read_text())
    data["files"][BLESSING_NAME] = {"sha256": "0" * 64, "bytes": 1}
    (directory / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"'blessing\.json'\] is never part of a bundle"):
        load_manifest(directory)


def test_a_new_comparison_keeps_the_promotion_history(make_version, bless) -> None:
    from fmnist.rollout.blessing import record_promotion

    directory = make_version(2)
    bless(directory, blessed=False)
    record_promotion(
        directory,
        model_name="fashion_mnist",
        model_version=2,
        manifest_sha256=None,
        label="stable",
        from_version=1,
        forced=True,
        reason="forced",
    )
    bless(directory, blessed=True)
    blessing = read_blessing(directory)
    assert blessing.blessed and blessing.promoted_from("stable") == 1
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]  # no temporary file
