"""Runtime selection, and proof that the edge package never imports TensorFlow."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from fmnist.edge.runtime import RuntimeMissing, select_runtime


def test_first_installed_runtime_is_chosen_and_named() -> None:
    runtime = select_runtime()
    assert runtime.name in ("litert", "tflite-runtime")
    assert runtime.version[0].isdigit()
    assert runtime.name in str(runtime)


def test_unknown_or_missing_runtime_is_a_clear_error(python_without) -> None:
    with pytest.raises(RuntimeMissing, match="unknown runtime 'onnx'"):
        select_runtime("onnx")
    result = python_without(
        """
        from fmnist.edge.runtime import RuntimeMissing, select_runtime
        try:
            select_runtime("litert")
        except RuntimeMissing as err:
            print(err)
        """,
        blocked=("ai_edge_litert",),
    )
    assert result.returncode == 0, result.stderr
    assert "the litert runtime is not installed" in result.stdout
    assert "pip install" in result.stdout


def test_tensorflow_lite_is_the_last_resort(edge_bundle: Path, python_without) -> None:
    """With neither LiteRT nor tflite-runtime, an installed TensorFlow's interpreter runs."""
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow is not installed here")
    result = python_without(
        f"""
        import numpy as np
        from fmnist.edge.classifier import Classifier, resolve_model
        from fmnist.edge.runtime import select_runtime
        runtime = select_runtime()
        model = resolve_model({str(edge_bundle)!r})
        probabilities = Classifier(model.path, runtime=runtime).predict_proba(
            np.zeros((3, 28, 28), np.uint8))
        print(runtime.name, probabilities.shape, round(float(probabilities.sum()), 1))
        """,
        blocked=("ai_edge_litert", "tflite_runtime"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[:1] == ["tensorflow"]
    assert "(3, 10) 3.0" in result.stdout


def test_no_runtime_installed_names_the_package_to_install(tmp_path: Path, python_without) -> None:
    blocked = ("ai_edge_litert", "tflite_runtime", "tensorflow")
    result = python_without(
        f"""
        import sys
        from fmnist.edge.cli import main
        sys.exit(main(["classify", {str(tmp_path / "m.tflite")!r}, "x.png"]))
        """,
        blocked=blocked,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "TFLite runtime is not installed" in line and "pip install ai-edge-litert" in line


def test_edge_package_imports_nothing_from_tensorflow(python_without) -> None:
    result = python_without(
        """
        import sys
        import fmnist.edge.bench, fmnist.edge.classifier, fmnist.edge.cli, fmnist.edge.model_probe
        import fmnist.edge.parity, fmnist.edge.runtime, fmnist.images, fmnist.manifest
        from fmnist.edge.runtime import select_runtime
        select_runtime()
        heavy = sorted(m for m in sys.modules
                       if m.split(".")[0] in ("tensorflow", "keras", "tf_keras", "jax"))
        print(heavy)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
