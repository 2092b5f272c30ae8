"""`fmnist predict` and `fmnist parity` as users run them, against real servers: parity passes
on the exported model, fails (exit 1) on a version whose weights were perturbed, and exits 2
when it cannot check."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist import dataset
from fmnist.manifest import load_manifest


def _fmnist(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fmnist.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


@pytest.fixture(scope="module")
def served(
    exported_bundle: Path,
    degraded_bundle: Path,
    fmnist_models: dict,
    session_model_server,
    tmp_path_factory,
):
    """The exported model as version 1, the same model with perturbed weights (exported as
    usual) as version 2, and a SavedModel without a bundle as version 3, all loaded (policy
    `all`), with label stable -> 1."""
    base = tmp_path_factory.mktemp("served") / "fashion_mnist"
    shutil.copytree(exported_bundle, base / "1")
    shutil.copytree(degraded_bundle, base / "2")
    shutil.copytree(fmnist_models[3], base / "3")
    config = tmp_path_factory.mktemp("served-config") / "models.config"
    config.write_text(
        "model_config_list { config { name: 'fashion_mnist' "
        f"base_path: '{base}' model_platform: 'tensorflow' "
        "model_version_policy { all {} } version_labels { key: 'stable' value: 1 } } }"
    )
    server = session_model_server("--model_config_file", str(config))
    return server, base


def test_parity_passes_on_the_exported_model(served, data_dir: Path, tmp_path: Path) -> None:
    server, base = served
    out = tmp_path / "parity.json"
    for endpoint in (["--grpc", server.grpc_target], ["--rest", server.rest_url]):
        done = _fmnist(
            "parity",
            *endpoint,
            *("--model-name", "fashion_mnist", "--label", "stable"),
            *("--bundle", str(base), "--data-dir", str(data_dir), "--json", str(out)),
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert "verdict" in done.stdout and "PASS" in done.stdout
        result = json.loads(out.read_text())
        assert result["passed"] and result["num_examples"] == 10_000
        assert result["agreement"] == 1.0 and result["max_abs_prob_diff"] < 1e-5
        assert result["details"]["answered_version"] == 1
        assert len(result["per_class"]) == 10
    unwritable = _fmnist(
        "parity",
        *("--grpc", server.grpc_target, "--model-name", "fashion_mnist", "--version", "1"),
        *("--bundle", str(base / "1"), "--data-dir", str(data_dir), "--json", str(tmp_path)),
    )
    assert unwritable.returncode == 2 and "Traceback" not in unwritable.stderr
    assert "Is a directory" in unwritable.stderr


def test_parity_fails_with_exit_1_on_a_degraded_version(
    served, data_dir: Path, tmp_path: Path
) -> None:
    server, base = served
    out = tmp_path / "degraded.json"
    done = _fmnist(
        "parity",
        *("--grpc", server.grpc_target, "--model-name", "fashion_mnist", "--version", "2"),
        *("--bundle", str(base / "1"), "--data-dir", str(data_dir), "--json", str(out)),
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "FAIL" in done.stdout and "top-1 agreement" in done.stdout
    assert "answered_version    2" in done.stdout
    result = json.loads(out.read_text())
    assert not result["passed"] and result["failures"]
    # Still a working classifier, just not the float model any more.
    assert 0.3 < result["agreement"] < 0.99 and result["candidate_accuracy"] > 0.2
    loose = _fmnist(
        "parity",
        *("--rest", server.rest_url, "--model-name", "fashion_mnist", "--version", "2"),
        *("--bundle", str(base / "1"), "--data-dir", str(data_dir), "--wait", "30"),
        *("--max-accuracy-drop", "100", "--min-agreement", "0"),
        *("--max-class-recall-drop", "100"),
    )
    assert loose.returncode == 0, loose.stdout[-2000:] + loose.stderr[-2000:]
    assert "(max 100.00)" in loose.stdout and "PASS" in loose.stdout


def test_model_directory_without_a_bundle_for_the_answering_version(served, data_dir) -> None:
    server, base = served
    done = _fmnist(
        "parity",
        *("--rest", server.rest_url, "--model-name", "fashion_mnist", "--version", "3"),
        *("--bundle", str(base), "--data-dir", str(data_dir)),
    )
    assert done.returncode == 2
    assert "no manifest.json" in done.stderr or "no bundle" in done.stderr
    assert "Traceback" not in done.stderr


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_parity_cannot_check_exits_2_with_one_line(
    exported_bundle: Path, data_dir: Path, tmp_path: Path
) -> None:
    common = ["--model-name", "fashion_mnist", "--data-dir", str(data_dir)]
    unreachable = _fmnist(
        "parity",
        *("--grpc", f"127.0.0.1:{_closed_port()}", "--timeout", "2"),
        *("--bundle", str(exported_bundle), *common),
    )
    unreachable_rest = _fmnist(
        "parity",
        *("--rest", f"http://127.0.0.1:{_closed_port()}", "--timeout", "2"),
        *("--bundle", str(exported_bundle), *common),
    )
    bad_url = _fmnist(
        "parity", "--rest", "localhost:port", "--bundle", str(exported_bundle), *common
    )
    missing = _fmnist(
        "parity", "--grpc", "127.0.0.1:1", "--bundle", str(tmp_path / "nope"), *common
    )
    for done, expected in (
        (unreachable, "UNAVAILABLE"),
        (unreachable_rest, "Connection refused"),
        (bad_url, "invalid TF Serving REST URL 'http://localhost:port'"),
        (missing, "no such bundle"),
    ):
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_predict_classifies_image_files(served, data_dir: Path, tmp_path: Path) -> None:
    server, base = served
    test = dataset.load_test(data_dir)
    reference = load_manifest(base / "1").load_reference()
    paths = []
    for i in range(3):
        path = tmp_path / f"item{i}.png"
        # A larger RGB picture of the item: predict converts it to what the signature takes.
        Image.fromarray(test.images[i]).resize((56, 56), Image.NEAREST).convert("RGB").save(path)
        paths.append(str(path))
    done = _fmnist(
        "predict",
        *("--rest", server.rest_url, "--model-name", "fashion_mnist", "--label", "stable"),
        *("--json", "--top-k", "2", "--bundle", str(base / "1"), *paths),
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [row["path"] for row in rows] == paths
    for row, expected in zip(rows, reference[:3], strict=True):
        best = row["predictions"][0]
        assert len(row["predictions"]) == 2
        assert best["class_id"] == int(np.argmax(expected))
        assert best["class_name"] == dataset.CLASS_NAMES[best["class_id"]]
    text = _fmnist(
        "predict", "--grpc", server.grpc_target, "--model-name", "fashion_mnist", paths[0]
    )
    assert text.returncode == 0 and "version" in text.stdout and paths[0] in text.stdout
    bad = _fmnist("predict", "--grpc", server.grpc_target, "--model-name", "x", str(tmp_path))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def _one_line_exit_2(done: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout[-1000:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert fragment in line, done.stderr


@pytest.mark.integration
@pytest.mark.parametrize("wait", ["nan", "inf", "-1"])
def test_parity_wait_must_be_finite_and_not_negative(
    exported_bundle: Path, data_dir: Path, wait: str
) -> None:
    """`--wait nan` used to poll an unreachable server for ever."""
    done = _fmnist(
        "parity",
        *("--grpc", f"127.0.0.1:{_closed_port()}", "--model-name", "fashion_mnist"),
        *("--bundle", str(exported_bundle), "--data-dir", str(data_dir), "--wait", wait),
        timeout=120,
    )
    _one_line_exit_2(done, f"--wait must be a finite number of seconds >= 0, got {float(wait)}")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("alter_reference", "manifest_text", "message"),
    [
        pytest.param(None, "[" * 100_000 + "]" * 100_000, "nested too deeply", id="nested"),
        pytest.param("nan_in_reference", None, "hold NaN or infinite values", id="nan-reference"),
        pytest.param("huge_reference_header", None, "expected [10000, 10]", id="1e8-row-header"),
    ],
)
def test_parity_refuses_a_tampered_bundle_before_sending(
    served, data_dir: Path, tmp_path: Path, tampering, alter_reference, manifest_text, message
) -> None:
    """Exit 2 ("could not check"), also for NaN in the reference (which used to pass)."""
    server, base = served
    alter = getattr(tampering, alter_reference) if alter_reference else None
    bundle = tampering.copy(
        base / "1",
        tmp_path / "1",
        manifest=manifest_text and (lambda _: manifest_text),
        files=alter,
    )
    done = _fmnist(
        "parity",
        *("--grpc", server.grpc_target, "--model-name", "fashion_mnist", "--version", "1"),
        *("--bundle", str(bundle), "--data-dir", str(data_dir)),
    )
    _one_line_exit_2(done, message)


@pytest.mark.integration
def test_parity_json_in_a_missing_directory_is_refused(
    served, data_dir: Path, tmp_path: Path
) -> None:
    server, base = served
    out = tmp_path / "missing" / "parity.json"
    done = _fmnist(
        "parity",
        *("--grpc", server.grpc_target, "--model-name", "fashion_mnist", "--version", "1"),
        *("--bundle", str(base / "1"), "--data-dir", str(data_dir), "--json", str(out)),
    )
    _one_line_exit_2(done, "does not exist (it is not created for you)")
    assert not (tmp_path / "missing").exists()


@pytest.mark.integration
def test_predict_refuses_hostile_npy_files(served, tmp_path: Path) -> None:
    """Checked from the header, before loading: no EOFError, ufunc error or MemoryError."""
    server, _ = served
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    strings = tmp_path / "strings.npy"
    np.save(strings, np.full((2, 28, 28), "x"))
    huge = tmp_path / "huge.npy"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (100_000_000, 28, 28)}
    )
    huge.write_bytes(header.getvalue() + b"\0" * 7840)
    for path, message in (
        (empty, "empty file"),
        (strings, "holds <U1 values"),
        (huge, "header promises shape [100000000, 28, 28]"),
    ):
        done = _fmnist(
            "predict", "--grpc", server.grpc_target, "--model-name", "fashion_mnist", str(path)
        )
        _one_line_exit_2(done, message)
