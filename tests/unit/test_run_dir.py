"""The run directory's typed reader and writer, on directories of plain files (no Keras)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fmnist.errors import UserError
from fmnist.run_dir import CONFIG_FILE, MODEL_FILE, RUN_FILE, RunDir, ValidationSplit
from fmnist.train.config import TrainConfig


def _run(tmp_path: Path, files: dict[str, Any]) -> RunDir:
    """A run directory holding `files`: dicts as JSON, str as text."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        text = content if isinstance(content, str) else json.dumps(content)
        (tmp_path / name).write_text(text)
    return RunDir(tmp_path)


SPLIT = {"val_fraction": 0.1, "seed": 42}
MODEL = {MODEL_FILE: "a zip archive in a real run"}


@pytest.mark.parametrize(
    ("files", "call", "message"),
    [
        (None, RunDir.check, "no such run directory"),
        ({CONFIG_FILE: SPLIT}, RunDir.check, f"no {MODEL_FILE} (not a training run directory?)"),
        ({CONFIG_FILE: SPLIT}, RunDir.load_model, f"no {MODEL_FILE}"),
        (MODEL, RunDir.split, f"{CONFIG_FILE}: missing"),
        ({CONFIG_FILE: {"seed": 42}}, RunDir.split, f"{CONFIG_FILE}: no 'val_fraction'"),
        ({CONFIG_FILE: {"val_fraction": 0.1}}, RunDir.split, f"{CONFIG_FILE}: no 'seed'"),
        ({CONFIG_FILE: SPLIT | {"val_fraction": "0.1"}}, RunDir.split, "val_fraction must be"),
        ({CONFIG_FILE: SPLIT | {"val_fraction": True}}, RunDir.split, "val_fraction must be"),
        ({CONFIG_FILE: SPLIT | {"val_fraction": 1.0}}, RunDir.split, "val_fraction must be"),
        ({CONFIG_FILE: SPLIT | {"seed": 4.2}}, RunDir.split, "seed must be a whole number"),
        ({CONFIG_FILE: SPLIT | {"seed": None}}, RunDir.split, "seed must be a whole number"),
        ({CONFIG_FILE: "{not json"}, RunDir.train_config, f"{CONFIG_FILE}: unreadable"),
        ({CONFIG_FILE: "[0.1, 42]"}, RunDir.train_config, f"{CONFIG_FILE}: not a JSON object"),
        ({RUN_FILE: "\xff"}, RunDir.run_info, f"{RUN_FILE}: unreadable"),
        ({RUN_FILE: "null"}, RunDir.data_dir, f"{RUN_FILE}: not a JSON object"),
    ],
)
def test_what_is_not_a_readable_run_is_one_line_naming_the_file(
    tmp_path: Path,
    files: dict[str, Any] | None,
    call: Callable[[RunDir], Any],
    message: str,
) -> None:
    run = RunDir(tmp_path / "nowhere") if files is None else _run(tmp_path / "run", files)
    with pytest.raises(UserError) as raised:
        call(run)
    assert message in str(raised.value)
    assert str(run.path) in str(raised.value)
    assert len(str(raised.value).splitlines()) == 1


def test_check_passes_a_directory_with_a_model(tmp_path: Path) -> None:
    run = _run(tmp_path, MODEL)
    assert run.check() is run


@pytest.mark.parametrize(
    ("recorded", "found"),
    [
        (lambda data: {"data_dir": str(data)}, True),
        (lambda data: {"data_dir": str(data.parent / "gone")}, False),  # trained elsewhere
        (lambda data: {"data_dir": None}, False),
        (lambda data: {"data_dir": ""}, False),
        (lambda data: {}, False),
        (None, False),  # no run.json
    ],
    ids=["exists", "gone", "null", "empty", "absent", "no run.json"],
)
def test_data_dir_is_the_recorded_one_only_while_it_exists(
    tmp_path: Path, recorded: Callable[[Path], dict] | None, found: bool
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    run = _run(tmp_path / "run", {RUN_FILE: recorded(data)} if recorded else {})
    assert run.data_dir() == (data if found else None)


def test_a_config_written_by_train_gives_its_split(tmp_path: Path) -> None:
    """config.json is TrainConfig.to_dict(); every run ever written has its split."""
    run = RunDir(tmp_path)
    run.write_config(TrainConfig(val_fraction=0.2, seed=7).to_dict())
    assert run.split() == ValidationSplit(val_fraction=0.2, seed=7)


def test_what_is_written_reads_back_in_the_format_old_runs_have(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    config = TrainConfig().to_dict()
    info = {"data_dir": None, "split": {"train": 54000, "seed": 42}, "wall_time_s": 1.5}
    metrics = {"accuracy": 0.9, "per_class": [{"class_id": 0, "f1": 0.5}]}
    run.write_config(config)
    run.write_run_info(info)
    run.write_metrics(metrics)
    run.write_report("report\n")
    assert run.train_config() == config
    assert run.run_info() == info
    for path, data in ((run.config_path, config), (run.run_path, info)):
        assert path.read_text() == json.dumps(data, indent=2) + "\n"
    assert run.metrics_path.read_text() == json.dumps(metrics, indent=2) + "\n"
    assert run.report_path.read_text() == "report\n"
    assert [p.name for p in (run.config_path, run.run_path, run.metrics_path)] == [
        "config.json",
        "run.json",
        "metrics.json",
    ]
