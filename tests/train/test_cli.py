"""The `fmnist train/evaluate/tune` commands, run as a user runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path


def fmnist(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fmnist.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("fmnist")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_data_directory_is_a_clear_error(tmp_path: Path) -> None:
    result = fmnist("train", "--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "nope", "does not exist")


def test_bad_config_value_is_a_clear_error(tmp_path: Path, data_dir: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('optimizer = "adamx"\n')
    result = fmnist(
        "train", "--data-dir", str(data_dir), "--out", str(tmp_path / "r"), "--config", str(config)
    )
    assert_one_line_error(result, "optimizer must be one of adam, adamw, sgd")
    assert not (tmp_path / "r").exists()


def test_altered_or_truncated_data_file_is_one_line_exit_2(tmp_path: Path, data_dir: Path) -> None:
    copy = tmp_path / "fmnist"
    shutil.copytree(data_dir, copy)
    labels = copy / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-100])  # truncated
    for command in ("data", "train"):
        args = [command, "--data-dir", str(copy)]
        if command == "train":
            args += ["--out", str(tmp_path / "run"), "--quick"]
        assert_one_line_error(fmnist(*args), "t10k-labels-idx1-ubyte.gz", "truncated")
    assert not (tmp_path / "run").exists()


def test_user_mistakes_in_flags_and_paths(tmp_path: Path, data_dir: Path) -> None:
    not_utf8 = tmp_path / "c.toml"
    not_utf8.write_bytes(b"width = 8 # \xff\xfe\n")
    common = ["--data-dir", str(data_dir)]
    assert_one_line_error(
        fmnist("train", *common, "--out", str(tmp_path / "r"), "--config", str(not_utf8)),
        "cannot parse",
    )
    assert_one_line_error(
        fmnist("tune", *common, "--out", str(tmp_path / "t"), "--trials", "0"), "--trials"
    )
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert_one_line_error(
        fmnist("train", *common, "--out", str(a_file / "run"), "--quick", "--epochs", "1"),
        "a-file",
    )


def test_evaluate_of_a_directory_without_model(tmp_path: Path) -> None:
    assert_one_line_error(fmnist("evaluate", str(tmp_path)), "no model.keras")


def test_quick_train_then_evaluate_through_the_cli(tmp_path: Path, data_dir: Path) -> None:
    run = tmp_path / "run"
    config = tmp_path / "narrow.toml"
    config.write_text("[train]\ndense_units = 48\n")
    result = fmnist(
        "train",
        *("--data-dir", str(data_dir), "--out", str(run), "--quick", "--epochs", "1"),
        *("--config", str(config)),
    )
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.7
    saved = json.loads((run / "config.json").read_text())
    # --quick sets the small model; what the config file says still wins
    assert (saved["width"], saved["dense_units"], saved["epochs"]) == (16, 48, 1)
    # A second train into the same run refuses instead of overwriting it.
    again = fmnist("train", "--data-dir", str(data_dir), "--out", str(run), "--quick")
    assert_one_line_error(again, "already holds a trained model")
    result = fmnist("evaluate", str(run))
    assert result.returncode == 0, result.stderr
    assert "Ankle boot" in result.stdout


def test_quick_tune_writes_table_and_best_config(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "tune"
    result = fmnist(
        "tune", "--data-dir", str(data_dir), "--out", str(out), "--quick", "--trials", "2"
    )
    assert result.returncode == 0, result.stderr
    assert "learning_rate" in result.stdout and "val_acc" in result.stdout
    results = json.loads((out / "results.json").read_text())
    assert len(results["trials"]) == 2
    assert 0.1 < results["best_value"] <= 1.0
    best = json.loads((out / "best_config.json").read_text())
    assert best["learning_rate"] == results["best_params"]["learning_rate"]
    assert (out / "results.csv").read_text().startswith("trial,")
