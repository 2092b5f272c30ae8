"""Compare a candidate version with a baseline, by default the version a label (`stable`)
names in models.config, and judge it by TFX-style thresholds (`thresholds.py`).

On the test set nothing needs to run: each bundle's manifest holds its float model's test
metrics and per-class figures, and its reference outputs the answers to every test image,
so accuracy, per-class recall and the agreement of the two versions come from the files
(after every file is checked against the manifest). Bundles measured on different test
sets (labels SHA-256, size, classes) are refused: their figures do not compare. Given
logged traffic, the candidate also answers it (`replay.py`), side by side with the
baseline for latency. A version with no baseline is judged on absolute limits alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.dataset import sha256_file
from fmnist.errors import EXIT_OK, EXIT_PARITY_FAILED, ManifestError, UserError
from fmnist.layout import list_versions
from fmnist.manifest import Manifest, load_manifest
from fmnist.rollout.blessing import Blessing, BlessingError, read_blessing
from fmnist.rollout.replay import ReplayResult
from fmnist.rollout.thresholds import DEFAULT_THRESHOLDS, Check, MetricThreshold, judge
from fmnist.serving.wire.model_config_file import CONFIG_NAME, read_config

TEST_SET_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1")
TRAFFIC_METRICS = (
    "traffic_agreement",
    "traffic_errors",
    "traffic_max_score_diff",
    "traffic_latency_p50_ms",
    "traffic_latency_p99_ms",
)


@dataclass(frozen=True)
class Bundle:
    """A published version with a verified manifest."""

    version: int
    directory: Path
    manifest: Manifest
    manifest_sha256: str


def load_bundle(model_dir: Path, version: int) -> Bundle:
    """Version `version` of the model at `model_dir`, every file checked against its
    manifest (a comparison vouches for exactly these bytes)."""
    versions = list_versions(model_dir)
    if version not in versions:
        have = ", ".join(map(str, sorted(versions))) or "none"
        raise UserError(f"{model_dir}: no version {version} (versions: {have})")
    manifest = load_manifest(versions[version])
    if manifest.model_version != version:
        raise ManifestError(
            f"{manifest.path}: describes version {manifest.model_version}, not {version}"
        )
    manifest.verify()
    return Bundle(version, versions[version], manifest, sha256_file(manifest.path))


def resolve_baseline(base_path: Path, name: str, label: str) -> tuple[int | None, str]:
    """The version `label` names for model `name` in BASE/models.config, and where that
    came from (or why there is none)."""
    path = base_path / CONFIG_NAME
    if not path.is_file():
        return None, f"no baseline: {path} does not exist"
    config = read_config(path)
    entry = next((m for m in config.model_config_list.config if m.name == name), None)
    if entry is None or label not in entry.version_labels:
        return None, f"no baseline: label {label!r} names no version of {name} in {path}"
    return int(entry.version_labels[label]), f"label {label} in {path}"


def test_set_figures(bundle: Bundle) -> dict[str, Any]:
    """The float model's test metrics and per-class recall, from the manifest."""
    metrics = bundle.manifest.float_metrics
    names = bundle.manifest.class_names
    per_class = metrics.get("per_class")
    if not isinstance(per_class, list) or len(per_class) != len(names):
        raise ManifestError(
            f"{bundle.manifest.path}: float_metrics has no per-class figures for its "
            f"{len(names)} classes"
        )
    recall = {}
    for name, row in zip(names, per_class, strict=True):
        value = row.get("recall") if isinstance(row, dict) else None
        if not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ManifestError(f"{bundle.manifest.path}: no recall for class {name!r}")
        recall[name] = float(value)
    figures: dict[str, Any] = {
        metric: float(metrics[metric])
        for metric in TEST_SET_METRICS
        if isinstance(metrics.get(metric), (int, float))
    }
    figures["class_recall"] = recall
    figures["support"] = {
        name: row.get("support") for name, row in zip(names, per_class, strict=True)
    }
    return figures


def check_same_test_set(candidate: Bundle, baseline: Bundle) -> None:
    """Refuse versions whose figures were measured on different test sets."""
    for bundle in (candidate, baseline):
        if not bundle.manifest.reference.labels_sha256:
            raise UserError(
                f"{bundle.manifest.path}: records no test labels checksum, so whether versions "
                f"{candidate.version} and {baseline.version} were measured on the same test "
                "set cannot be told; export it again"
            )
    ours, theirs = candidate.manifest, baseline.manifest
    if ours.reference.labels_sha256 != theirs.reference.labels_sha256 or (
        ours.reference.num_examples != theirs.reference.num_examples
    ):
        raise UserError(
            f"versions {candidate.version} and {baseline.version} were measured on different "
            f"test sets (labels SHA-256 {ours.reference.labels_sha256[:12]}... of "
            f"{ours.reference.num_examples} vs {theirs.reference.labels_sha256[:12]}... of "
            f"{theirs.reference.num_examples}): their figures do not compare"
        )
    if ours.class_names != theirs.class_names:
        raise UserError(
            f"versions {candidate.version} and {baseline.version} name their classes "
            "differently: their figures do not compare"
        )


@dataclass
class Comparison:
    """Everything a comparison measured and judged, for a table, Markdown, JSON and the
    blessing."""

    model: str
    base_path: str
    candidate: int
    baseline: int | None
    baseline_source: str
    baseline_blessing: str
    test_set: dict[str, Any]
    traffic: dict[str, Any] | None
    checks: list[Check]
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        return [failure for check in self.checks for failure in check.failures]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.passed else EXIT_PARITY_FAILED

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "base_path": self.base_path,
            "candidate": self.candidate,
            "baseline": self.baseline,
            "baseline_source": self.baseline_source,
            "baseline_blessing": self.baseline_blessing,
            "passed": self.passed,
            "failures": self.failures,
            "notes": self.notes,
            "checks": [check.to_dict() for check in self.checks],
            "test_set": self.test_set,
            "traffic": self.traffic,
        }


def compare_versions(
    candidate: Bundle,
    baseline: Bundle | None,
    *,
    thresholds: dict[str, MetricThreshold] = DEFAULT_THRESHOLDS,
    baseline_source: str = "",
    traffic: ReplayResult | None = None,
    base_path: Path | None = None,
) -> Comparison:
    """Judge `candidate` against `baseline` (None: a first version, absolute limits only)
    on the test set and, given a replay of logged traffic against it, on that traffic."""
    if baseline is not None:
        check_same_test_set(candidate, baseline)
    ours = test_set_figures(candidate)
    theirs = test_set_figures(baseline) if baseline is not None else None
    has_baseline = baseline is not None
    notes = []
    if not has_baseline:
        notes.append(f"{baseline_source}: judged on absolute limits alone (no change thresholds)")
    checks = []
    for metric in TEST_SET_METRICS:
        if metric in thresholds and metric in ours:
            old = theirs.get(metric) if theirs else None
            checks.append(
                judge(metric, ours[metric], old, thresholds[metric], has_baseline=has_baseline)
            )
    if "class_recall" in thresholds:
        for name, recall in ours["class_recall"].items():
            old = theirs["class_recall"][name] if theirs else None
            check = judge(
                f"class_recall[{name}]",
                recall,
                old,
                thresholds["class_recall"],
                has_baseline=has_baseline,
            )
            checks.append(check)
    test_set = _test_set_section(candidate, baseline, ours, theirs)
    if baseline is not None and "agreement" in thresholds:
        checks.append(
            judge(
                "agreement", test_set["agreement"], None, thresholds["agreement"], has_baseline=True
            )
        )
    traffic_section = None
    if traffic is not None:
        traffic_section = _traffic_section(traffic)
        figures = _traffic_figures(traffic)
        for metric in TRAFFIC_METRICS:
            if metric in thresholds:
                value, old = figures.get(metric, (None, None))
                checks.append(
                    judge(metric, value, old, thresholds[metric], has_baseline=has_baseline)
                )
        logged = [v for v in traffic.logged_versions if v != "unknown"]
        if baseline is not None and logged and logged != [str(baseline.version)]:
            notes.append(
                f"the log was answered by version {', '.join(logged)}, not only the baseline "
                f"{baseline.version}: traffic agreement is with those answers"
            )
    elif any(metric in thresholds for metric in TRAFFIC_METRICS):
        notes.append("no logged traffic given (--logs): traffic thresholds not applied")
    return Comparison(
        model=candidate.manifest.model_name,
        base_path=str(base_path or candidate.directory.parent.parent),
        candidate=candidate.version,
        baseline=baseline.version if baseline else None,
        baseline_source=baseline_source,
        baseline_blessing=_blessing_status(baseline),
        test_set=test_set,
        traffic=traffic_section,
        checks=checks,
        notes=notes,
    )


def _test_set_section(
    candidate: Bundle, baseline: Bundle | None, ours: dict[str, Any], theirs: dict[str, Any] | None
) -> dict[str, Any]:
    reference = candidate.manifest.reference
    section: dict[str, Any] = {
        "num_examples": reference.num_examples,
        "labels_sha256": reference.labels_sha256,
        "candidate": {m: ours[m] for m in TEST_SET_METRICS if m in ours},
        "baseline": {m: theirs[m] for m in TEST_SET_METRICS if m in theirs} if theirs else None,
        "per_class": [
            {
                "class_name": name,
                "support": ours["support"].get(name),
                "candidate_recall": recall,
                "baseline_recall": theirs["class_recall"][name] if theirs else None,
            }
            for name, recall in ours["class_recall"].items()
        ],
    }
    if baseline is not None:
        new = candidate.manifest.load_reference().argmax(1)
        old = baseline.manifest.load_reference().argmax(1)
        section["agreement"] = float(np.mean(new == old))
        section["changed_answers"] = int(np.sum(new != old))
    return section


def _traffic_figures(result: ReplayResult) -> dict[str, tuple[Any, Any]]:
    """Traffic metric -> (candidate, baseline) from a replay."""
    latency = result.latency or {}
    target, reference = latency.get("target", {}), latency.get("logged", {})
    return {
        "traffic_agreement": (result.agreement, None),
        "traffic_errors": (result.error_count, None),
        "traffic_max_score_diff": (result.max_score_diff, None),
        "traffic_latency_p50_ms": (target.get("p50_ms"), reference.get("p50_ms")),
        "traffic_latency_p99_ms": (target.get("p99_ms"), reference.get("p99_ms")),
    }


def _traffic_section(result: ReplayResult) -> dict[str, Any]:
    data = result.to_dict()
    for key in ("tolerance", "passed", "failures"):  # the thresholds judge it here
        data.pop(key, None)
    return data


def _blessing_status(baseline: Bundle | None) -> str:
    """What the baseline's own blessing says (the comparison before this one)."""
    if baseline is None:
        return "n/a"
    try:
        blessing: Blessing | None = read_blessing(baseline.directory)
    except BlessingError as err:
        return f"unreadable ({err})"
    if blessing is None:
        return "none (never compared: labelled by export or by hand)"
    forced = any(p.get("forced") for p in blessing.promotions if p.get("to") == baseline.version)
    if not blessing.judged:
        return "none (promoted with --force, never compared)"
    verdict = "passed" if blessing.blessed else "failed"
    against = blessing.baseline_version
    text = f"{verdict} against version {against}" if against is not None else f"{verdict} alone"
    if blessing.manifest_sha256 != baseline.manifest_sha256:
        text += " (for another manifest: the bundle changed since)"
    return text + (" (promoted with --force)" if forced else "")
