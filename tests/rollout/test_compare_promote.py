"""`fmnist compare` and `fmnist promote` on real exported bundles, as users run them: a
degraded version fails its comparison and cannot be promoted, a good one passes, is
promoted and rolled back; the blessing beside a bundle leaves it verifiable by
`fmnist-edge parity` and `fmnist parity`'s manifest checks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fmnist.manifest import load_manifest
from fmnist.serving.wire.model_config_file import read_config

pytestmark = pytest.mark.integration


def run(*args: str, module: str = "fmnist.cli") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


def stable(base: Path) -> int:
    return read_config(base / "models.config").model_config_list.config[0].version_labels["stable"]


@pytest.fixture
def base(rollout_versions, tmp_path: Path) -> Path:
    """fashion_mnist 1 (the tiny model, stable), 2 (its perturbed copy), 3 (the tiny model
    again); the latest 3 served."""
    return rollout_versions(tmp_path / "models", "latest { num_versions: 3 }")


def test_a_degraded_version_fails_and_is_not_promoted(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "compare.json"
    done = run("compare", str(base), "--candidate", "2", "--json", str(out))
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "against version 1 (label stable in" in done.stdout and "FAIL" in done.stdout
    result = json.loads(out.read_text())
    assert result["baseline"] == 1 and not result["passed"]
    assert any(f.startswith("accuracy changed -") for f in result["failures"])
    assert 0.3 < result["test_set"]["agreement"] < 0.99
    blessing = json.loads((base / "fashion_mnist" / "2" / "blessing.json").read_text())
    assert blessing["blessed"] is False and blessing["baseline"]["version"] == 1
    refused = run("promote", str(base), "--label", "stable", "--to", "2")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "version 2 failed its comparison against version 1: accuracy changed" in refused.stderr
    assert stable(base) == 1


def test_a_good_version_is_promoted_then_rolled_back(base: Path) -> None:
    done = run("compare", str(base), "--candidate", "3")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "agreement          100.00% of the test images (0 answers changed)" in done.stdout
    assert "baseline blessing  none (never compared: labelled by export or by hand)" in done.stdout
    promoted = run("promote", str(base), "--label", "stable", "--to", "3")
    assert promoted.returncode == 0, promoted.stderr
    assert promoted.stdout.startswith(
        "stable: fashion_mnist version 1 -> version 3\nallowed: blessed"
    )
    assert stable(base) == 3
    again = run("compare", str(base), "--candidate", "2", "--dry-run")  # baseline is 3 now
    assert again.returncode == 1 and "against version 3" in again.stdout
    assert "passed against version 1" in again.stdout  # the baseline's own blessing, read
    rolled_back = run("promote", str(base), "--label", "stable", "--to", "1")
    assert rolled_back.returncode == 0, rolled_back.stderr
    assert "allowed: rollback: stable named version 1 before version 3" in rolled_back.stdout
    assert stable(base) == 1


def test_a_first_version_passes_on_absolute_limits_alone(base: Path) -> None:
    config = base / "models.config"
    config.write_text(config.read_text().replace("version_labels { key: 'stable' value: 1 }", ""))
    done = run("compare", str(base), "--candidate", "1", "--min-accuracy", "0.5")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "judged on absolute limits alone (no change thresholds)" in done.stdout
    assert run("compare", str(base), "--candidate", "1", "--min-accuracy", "0.99").returncode == 1


def test_bundles_of_another_test_set_are_refused(base: Path, tampering) -> None:
    model_dir = base / "fashion_mnist"
    shutil.rmtree(model_dir / "3")
    tampering.copy(
        model_dir / "1",
        model_dir / "3",
        manifest=lambda m: (
            m.update(model_version=3),
            m["reference"].update(labels_sha256="f" * 64),
        ),
    )
    done = run("compare", str(base), "--candidate", "3")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "were measured on different test sets" in done.stderr
    assert not (model_dir / "3" / "blessing.json").exists()


def test_a_blessed_bundle_still_verifies_on_the_edge(base: Path, data_dir: Path) -> None:
    bundle = base / "fashion_mnist" / "3"
    assert run("compare", str(base), "--candidate", "3").returncode == 0
    assert (bundle / "blessing.json").is_file()
    load_manifest(bundle).verify()
    done = run("parity", str(bundle), "--data-dir", str(data_dir), module="fmnist.edge.cli")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
