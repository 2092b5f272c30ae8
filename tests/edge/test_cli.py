"""`fmnist-edge` as users run it: classify, bench, parity, and one-line errors for bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist import dataset
from fmnist.manifest import load_manifest, write_manifest


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
def sample_images(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Real test images as a PNG (upscaled RGB), a JPEG and a .npy batch, with labels."""
    test = dataset.load_test(data_dir)
    folder = tmp_path_factory.mktemp("images")
    Image.fromarray(test.images[0]).convert("RGB").resize((280, 280)).save(folder / "a.png")
    Image.fromarray(test.images[1]).save(folder / "b.jpg", quality=95)
    np.save(folder / "batch.npy", test.images[2:6])
    return {"folder": folder, "labels": test.labels[:6].tolist()}


def test_classify_json_lists_predictions_most_probable_first(
    edge_bundle: Path, sample_images: dict
) -> None:
    folder = sample_images["folder"]
    result = edge(
        "classify",
        str(edge_bundle),
        str(folder / "a.png"),
        str(folder / "b.jpg"),
        str(folder / "batch.npy"),
        "--json",
        "--top-k",
        "3",
    )
    assert result.returncode == 0, result.stderr
    assert "runtime:" in result.stderr
    results = json.loads(result.stdout)
    assert [Path(r["path"]).name for r in results] == ["a.png", "b.jpg"] + [
        f"batch.npy[{i}]" for i in range(4)
    ]
    for entry in results:
        predictions = entry["predictions"]
        assert len(predictions) == 3
        assert set(predictions[0]) == {"class_id", "class_name", "probability"}
        probabilities = [p["probability"] for p in predictions]
        assert probabilities == sorted(probabilities, reverse=True)
        assert predictions[0]["class_name"] == dataset.CLASS_NAMES[predictions[0]["class_id"]]
    top1 = [r["predictions"][0]["class_id"] for r in results]
    assert sum(t == y for t, y in zip(top1, sample_images["labels"], strict=True)) >= 4


def test_classify_text_output(edge_bundle: Path, sample_images: dict) -> None:
    result = edge(
        "classify",
        str(edge_bundle),
        str(sample_images["folder"] / "a.png"),
        "--top-k",
        "2",
        "--kind",
        "float32",
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith(str(sample_images["folder"] / "a.png") + ": ")
    assert "%" in line


def test_bench_reports_latency_percentiles(edge_bundle: Path) -> None:
    result = edge(
        "bench", str(edge_bundle), "--runs", "30", "--batch", "4", "--threads", "1", "--json"
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["batch"] == 4 and figures["runs"] == 30
    assert 0 < figures["p50_ms"] <= figures["p90_ms"] <= figures["p99_ms"]
    assert figures["init_ms"] > 0 and figures["first_inference_ms"] > 0
    assert figures["images_per_s"] > 0 and figures["peak_rss_mb"] > 10


def test_parity_passes_and_writes_json(edge_bundle: Path, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "parity.json"
    result = edge(
        "parity",
        str(edge_bundle),
        "--data-dir",
        str(data_dir),
        "--json",
        str(out),
        "--max-accuracy-drop",
        "2",
        "--min-agreement",
        "0.95",
        "--max-class-recall-drop",
        "5",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict" in result.stdout and "PASS" in result.stdout
    report = json.loads(out.read_text())
    assert report["passed"] is True and report["num_examples"] == 10000
    assert report["agreement"] >= 0.95 and len(report["per_class"]) == 10
    assert report["tolerance"] == {
        "max_accuracy_drop_pp": 2.0,
        "min_agreement": 0.95,
        "max_class_recall_drop_pp": 5.0,
    }
    assert "worst class recall" in result.stdout


def test_parity_fails_with_exit_1_on_a_drifted_model(
    edge_bundle: Path, data_dir: Path, tmp_path: Path
) -> None:
    """A bundle whose int8 file is the model of another 'version' (here: the float reference
    shifted by one class) must fail parity, not pass silently."""
    copy = tmp_path / "drifted"
    shutil.copytree(edge_bundle, copy)
    manifest = load_manifest(copy)
    reference = manifest.load_reference()
    np.savez_compressed(copy / manifest.reference.file, probabilities=np.roll(reference, 1, axis=1))
    fields = {k: v for k, v in manifest.data.items() if k not in ("schema", "schema_version")}
    write_manifest(copy, fields)
    out = tmp_path / "parity.json"
    result = edge("parity", str(copy), "--data-dir", str(data_dir), "--json", str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL" in result.stdout
    report = json.loads(out.read_text())
    assert report["passed"] is False and report["agreement"] < 0.5


def test_bad_inputs_are_one_line_errors(
    edge_bundle: Path, tmp_path: Path, sample_images: dict
) -> None:
    png = str(sample_images["folder"] / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes((edge_bundle / "model_int8.tflite").read_bytes()[:2000])
    no_manifest = tmp_path / "no_manifest"
    no_manifest.mkdir()
    tampered = tmp_path / "tampered"
    shutil.copytree(edge_bundle, tampered)
    with open(tampered / "model_int8.tflite", "r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))

    assert_one_line_error(edge("classify", str(truncated), png), "truncated.tflite")
    assert_one_line_error(edge("classify", str(tmp_path / "notes.txt"), png), "not a TFLite")
    assert_one_line_error(edge("classify", str(tampered), png), "does not match")
    assert_one_line_error(
        edge("classify", str(edge_bundle), str(tmp_path / "notes.txt")), "not a readable image"
    )
    assert_one_line_error(edge("classify", str(edge_bundle)), "no input files")
    assert_one_line_error(edge("classify", str(no_manifest), png), "no manifest.json")
    assert_one_line_error(edge("parity", str(no_manifest)), "no manifest.json")
    assert_one_line_error(edge("classify", str(edge_bundle), png, "--top-k", "0"), "--top-k")


def test_parity_fails_with_exit_1_when_one_class_collapses(
    edge_bundle: Path, data_dir: Path, tmp_path: Path
) -> None:
    """Overall accuracy and agreement within tolerance, but the int8 model misses 3 pp more
    Shirts than the reference: the per-class gate fails it and names the class. The
    manifest's tolerance predates the per-class field, so the 1.0 pp default applies."""
    from fmnist.edge.classifier import Classifier

    copy = tmp_path / "shirt"
    shutil.copytree(edge_bundle, copy)
    manifest = load_manifest(copy)
    test = dataset.load_test(data_dir)
    model = Classifier(manifest.verify_file(manifest.tflite("int8").file))
    int8 = model.predict_proba(test.images, batch_size=1000)
    shirt = manifest.class_names.index("Shirt")
    missed = np.flatnonzero((test.labels == shirt) & (int8.argmax(axis=1) != shirt))[:30]
    assert len(missed) == 30, "the int8 model misses fewer than 30 Shirts: nothing to hide"
    reference = int8.copy()
    reference[missed] = np.eye(len(manifest.class_names))[shirt]  # the float model got them
    np.savez_compressed(copy / manifest.reference.file, probabilities=reference)
    fields = {k: v for k, v in manifest.data.items() if k not in ("schema", "schema_version")}
    fields["tolerance"] = {"max_accuracy_drop_pp": 0.5, "min_agreement": 0.99}
    write_manifest(copy, fields)

    out = tmp_path / "parity.json"
    result = edge("parity", str(copy), "--data-dir", str(data_dir), "--json", str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["accuracy_drop_pp"] == pytest.approx(0.3) and report["agreement"] > 0.99
    assert report["failures"] == [f for f in report["failures"] if "'Shirt' recall dropped" in f]
    assert "worst class recall  Shirt:" in result.stdout and "drop 3.00 pp (max 1.00)" in (
        result.stdout
    )


@pytest.mark.parametrize("command", ["classify", "bench", "parity"])
def test_a_model_that_aborts_the_runtime_is_a_one_line_error(
    command: str,
    edge_bundle: Path,
    aborting_tflite: Path,
    data_dir: Path,
    sample_images: dict,
    tmp_path: Path,
) -> None:
    """A bundle whose int8 model makes TFLite abort in allocate_tensors: every command tries
    the model in a child process first, so it says why and exits 2 instead of dying."""
    copy = tmp_path / "aborting"
    shutil.copytree(edge_bundle, copy)
    manifest = load_manifest(copy)
    (copy / manifest.tflite("int8").file).write_bytes(
        (aborting_tflite / "model.tflite").read_bytes()
    )
    fields = {k: v for k, v in manifest.data.items() if k not in ("schema", "schema_version")}
    write_manifest(copy, fields)  # checksums of the files as they are now
    args = {
        "classify": [str(sample_images["folder"] / "a.png")],
        "bench": ["--runs", "1"],
        "parity": ["--data-dir", str(data_dir)],
    }[command]
    result = edge(command, str(copy), *args)
    assert_one_line_error(result, "killed the process that loaded it (SIGABRT)")
