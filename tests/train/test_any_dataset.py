"""Training on datasets other than Fashion-MNIST: the .npz and folder forms through the CLI,
the streaming pipeline, and bad data mid-training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmnist.data import open_dataset
from fmnist.errors import DataError

# Test accuracy floors of `fmnist train --quick`, well under what it measured on this CPU
# (digits 0.90, shapes 0.88; chance is 0.10 and 0.20).
FLOORS = {"digits": 0.75, "shapes": 0.70}


def fmnist(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fmnist.cli", *args], capture_output=True, text=True, timeout=600
    )


DIGITS = {"height": 8, "width": 8, "channels": 1, "class_names": list("0123456789")}
SHAPES = {
    "height": 32,
    "width": 32,
    "channels": 3,
    "class_names": ["circle", "cross", "ring", "square", "triangle"],
}


@pytest.mark.parametrize(
    ("dataset", "kind", "contract"), [("digits", "npz", DIGITS), ("shapes", "folder", SHAPES)]
)
def test_quick_training_learns_and_records_the_contract(
    request: pytest.FixtureRequest, tmp_path: Path, dataset: str, kind: str, contract: dict
) -> None:
    path = request.getfixturevalue("digits_npz" if dataset == "digits" else "shapes_dir")
    run = tmp_path / "run"
    result = fmnist("train", "--data-dir", str(path), "--out", str(run), "--quick")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["accuracy"] > FLOORS[dataset]
    written = json.loads((run / "input.json").read_text())
    assert written == {**contract, "dtype": "uint8", "scaling": "unit"}
    info = json.loads((run / "run.json").read_text())
    assert info["data"]["kind"] == kind and info["data"]["path"] == str(path)
    again = fmnist("evaluate", str(run))  # reopens the run's data with its split and contract
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(json.loads((run / "metrics.json").read_text())["per_class"]) == len(
        contract["class_names"]
    )


def test_evaluating_on_data_of_another_shape_is_one_line(
    tmp_path: Path, digits_npz: Path, shapes_dir: Path
) -> None:
    run = tmp_path / "run"
    trained = fmnist(
        "train", "--data-dir", str(digits_npz), "--out", str(run), "--quick", "--epochs", "1"
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    result = fmnist("evaluate", str(run), "--data-dir", str(shapes_dir))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    # The folder's images are resized to the run's 8x8, but stay colour, in 5 classes.
    assert "8x8x3 uint8, 5 classes" in result.stderr and "was trained on 8x8x1" in result.stderr


def test_stream_is_the_batches_and_shards_split_it(shapes_dir: Path) -> None:
    data = open_dataset(shapes_dir)
    streamed = [(x.numpy(), y.numpy()) for x, y in data.tf_dataset("test", 64)]
    batched = list(data.batches("test", 64))
    for (x, y), (bx, by) in zip(streamed, batched, strict=True):
        assert (x == bx).all() and (y == by).all()
    shards = [
        np.concatenate([y.numpy() for _, y in data.tf_dataset("train", 50, shuffle=True, shard=s)])
        for s in ((2, 0), (2, 1))
    ]
    assert sum(map(len, shards)) == data.size("train")
    assert abs(len(shards[0]) - len(shards[1])) <= 1


def test_a_file_that_breaks_mid_training_stops_with_one_line(
    tmp_path: Path, shapes_dir: Path
) -> None:
    from fmnist.data.streaming import data_errors

    data = open_dataset(shapes_dir)
    source, indices = data._parts["train"]
    victim = Path(source.path(indices[5]))
    victim.rename(tmp_path / "moved.png")  # after the scan: only the decode can notice
    try:
        with (
            pytest.raises(DataError, match=rf"{victim.name}: cannot decode") as caught,
            data_errors(),
        ):
            for _ in data.tf_dataset("train", 32):
                pass
        assert "\n" not in str(caught.value)
    finally:
        (tmp_path / "moved.png").rename(victim)


def test_a_folder_without_images_is_one_line_for_train(tmp_path: Path) -> None:
    (tmp_path / "data" / "cats").mkdir(parents=True)
    (tmp_path / "data" / "dogs").mkdir()
    result = fmnist("train", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no readable images" in result.stderr
    assert not (tmp_path / "r").exists()
