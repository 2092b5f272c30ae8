"""`fmnist pipeline --quick` end to end as a user runs it, its report in a real headless
Chromium, its exit codes, and the notebook executed in quick mode."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "fashion_mnist_pipeline.ipynb"
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def _fmnist(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "fmnist.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="session")
def quick_pipeline(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("pipeline") / "out"
    done = _fmnist("pipeline", "--quick", "--data-dir", str(data_dir), "--out", str(out))
    return done, out


def test_quick_pipeline_passes_and_writes_every_output(quick_pipeline) -> None:
    done, out = quick_pipeline
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "PASS: pipeline finished" in done.stdout
    for name in ("report.html", "report.md", "report.json", "models/models.config"):
        assert (out / name).is_file(), name
    assert (out / "models" / "fashion_mnist" / "1" / "manifest.json").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] is True and report["quick"] is True
    names = [p["name"] for p in report["parity"]]
    assert len(names) == 3 and "gRPC" in names[0] and "REST" in names[1] and "int8" in names[2]
    for check in report["parity"]:
        assert check["num_examples"] == 10_000 and check["passed"]
    assert report["float_metrics"]["accuracy"] > 0.75  # quick mode clearly beats chance
    assert {"train", "evaluate", "export", "served parity (gRPC, REST)", "edge parity"} <= set(
        report["stages"]
    )
    paths = {(row["path"].split(" (")[0], row["batch"]) for row in report["latency"]}
    for path in ("SavedModel in-process", "SavedModel over gRPC", "SavedModel over REST"):
        assert {(path, 1), (path, 64)} <= paths
    assert any(p.startswith("TFLite int8") for p, _ in paths)
    assert all(row["p50_ms"] > 0 for row in report["latency"])
    markdown = (out / "report.md").read_text()
    for heading in ("Parity with the float model", "Latency", "Artifacts", "Float vs int8"):
        assert heading in markdown


def _launch_chromium(playwright):
    """The system's Chromium (Debian's `chromium` package), else Playwright's own build; a
    skip when there is neither, unless $FMNIST_REQUIRE_BROWSER is set (CI)."""
    from playwright.sync_api import Error

    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    system = next(filter(None, map(shutil.which, CHROMIUM_CANDIDATES)), None)
    try:
        return playwright.chromium.launch(executable_path=system, args=args)
    except Error as err:
        if os.environ.get("FMNIST_REQUIRE_BROWSER"):
            raise
        pytest.skip(f"no Chromium (install Debian's `chromium` package): {str(err)[:200]}")


def test_report_renders_its_images_in_headless_chromium(quick_pipeline) -> None:
    from playwright.sync_api import sync_playwright

    done, out = quick_pipeline
    assert done.returncode == 0, done.stderr[-2000:]
    outside: list[str] = []
    with sync_playwright() as p:
        browser = _launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on(
                "request",
                lambda r: None if r.url.startswith(("data:", "file:")) else outside.append(r.url),
            )
            page.goto((out / "report.html").as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "imgs => imgs.map(i => [i.alt, i.complete, i.naturalWidth])"
            )
            headings = page.eval_on_selector_all("h2", "hs => hs.map(h => h.textContent)")
            verdicts = page.inner_text("body")
        finally:
            browser.close()
    assert len(images) >= 4, images
    assert all(complete and width > 100 for _, complete, width in images), images
    assert not outside, f"the report fetched outside resources: {outside}"
    assert "Parity with the float model" in headings and "Latency" in headings
    assert "PASS" in verdicts


def test_existing_outputs_are_not_mixed_without_overwrite(quick_pipeline, data_dir: Path) -> None:
    _, out = quick_pipeline
    done = _fmnist("pipeline", "--quick", "--data-dir", str(data_dir), "--out", str(out))
    assert done.returncode == 2
    assert "already holds pipeline outputs" in done.stderr and "Traceback" not in done.stderr


def test_pipeline_exits_1_when_a_parity_check_fails(data_dir: Path, tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.toml"
    tiny.write_text("[train]\nwidth = 4\ndense_units = 16\nepochs = 1\ntrain_subset = 3000\n")
    out = tmp_path / "out"
    args = ["--data-dir", str(data_dir), "--out", str(out), "--config", str(tiny)]
    done = _fmnist("pipeline", *args, "--min-agreement", "1.0", "--max-accuracy-drop", "0")
    assert done.returncode == 1, done.stderr[-2000:]
    assert "outside tolerance" in done.stderr and "report: " in done.stderr
    assert not list((out / "models").glob("fashion_mnist/[0-9]*"))
    # What was measured is still reported: the failed export gate, with its numbers.
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] is False and "export refused" in report["failure"]
    assert [p["passed"] for p in report["parity"]].count(False) >= 1
    assert all(p["num_examples"] == 10_000 for p in report["parity"])
    markdown = (out / "report.md").read_text()
    assert "FAIL" in markdown and "Parity with the float model" in markdown
    assert "Latency" not in markdown  # nothing was served
    assert "data:image/png;base64," in (out / "report.html").read_text()


def test_flip_average_pipeline_reports_the_averaged_float_model(
    data_dir: Path, tmp_path: Path
) -> None:
    tiny = tmp_path / "tiny.toml"
    tiny.write_text("[train]\nwidth = 4\ndense_units = 16\nepochs = 1\ntrain_subset = 3000\n")
    out = tmp_path / "out"
    args = ["--data-dir", str(data_dir), "--out", str(out), "--config", str(tiny)]
    loose = ["--min-agreement", "0", "--max-accuracy-drop", "100", "--max-class-recall-drop", "100"]
    done = _fmnist("pipeline", *args, *loose, "--flip-average", "--latency-runs", "3")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    manifest = json.loads((out / "models" / "fashion_mnist" / "1" / "manifest.json").read_text())
    assert report["flip_average"] is True and manifest["flip_average"] is True
    # The float figures are those of the model every parity check compared with ...
    assert report["float_metrics"]["accuracy"] == manifest["float_metrics"]["accuracy"]
    # ... and the trained model's own are kept beside them.
    alone = json.loads((out / "run" / "metrics.json").read_text())
    assert report["model_alone_metrics"]["accuracy"] == alone["accuracy"]
    assert "Exported with test-time flip averaging" in (out / "report.md").read_text()


def test_quick_pipeline_runs_end_to_end_on_a_colour_folder_dataset(tmp_path: Path) -> None:
    shapes = tmp_path / "shapes"
    subprocess.run(
        [sys.executable, str(REPO / "tools" / "example_datasets.py"), "shapes", str(shapes)],
        check=True,
        capture_output=True,
    )
    out = tmp_path / "out"
    done = _fmnist("pipeline", "--quick", "--data-dir", str(shapes), "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = json.loads((out / "models" / "shapes" / "1" / "manifest.json").read_text())
    assert manifest["input"]["height"] == 32 and manifest["input"]["channels"] == 3
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["kind"] == "folder" and report["data"]["input"].startswith("32x32x3")
    assert [check["passed"] for check in report["parity"]] == [True, True, True]
    assert report["float_metrics"]["accuracy"] > 0.5  # 5 classes: chance is 0.2
    assert "A folder per class at" in (out / "report.md").read_text()


def test_a_model_name_that_cannot_be_a_directory_is_refused_before_training(tmp_path: Path) -> None:
    done = _fmnist("pipeline", "--name", "../up", "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "--name '../up'" in done.stderr and not (tmp_path / "o").exists()


def test_missing_data_directory_is_a_usage_error(tmp_path: Path) -> None:
    done = _fmnist("pipeline", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert str(tmp_path / "none") in done.stderr


def test_notebook_is_committed_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_notebook_runs_in_quick_mode(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.setenv("FMNIST_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("FMNIST_DATA_DIR", str(data_dir))
    monkeypatch.setenv("FMNIST_NOTEBOOK_OUT", str(tmp_path))
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": NOTEBOOK.parent}},
    )
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # samples, curves, confusion matrix, mistakes, edge predictions
    text = "".join(o.get("text", "") for o in outputs)
    assert "answered by version 1" in text
    assert len(re.findall(r"verdict\s+PASS", text)) == 3
