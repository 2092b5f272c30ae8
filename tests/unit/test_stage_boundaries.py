"""Export reads runs through the TF-free core (fmnist.run_dir) and imports nothing from the
training stage; the core modules the stages share import without TensorFlow or scikit-learn."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def imported_modules(source: str, package: str) -> Iterator[str]:
    """Every module `source` (a module of `package`) imports, at its top or inside functions;
    for `from M import name`, both M and M.name (name may be a module)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def imports_of(source: str, package: str, stage: str) -> list[str]:
    return sorted(
        {m for m in imported_modules(source, package) if m == stage or m.startswith(stage + ".")}
    )


@pytest.mark.parametrize(
    "source",
    [
        "import fmnist.train.model",
        "from fmnist.train.data import subset",
        "from fmnist import train",
        "from ..train import evaluate",
        "from .. import train",
        "def lazy():\n    from fmnist.train.train import RUN_FILE\n",
        "class C:\n    def m(self):\n        import fmnist.train as t\n",
    ],
)
def test_the_check_finds_every_form_of_import(source: str) -> None:
    assert imports_of(source, "fmnist.export", "fmnist.train")


@pytest.mark.parametrize(
    "source",
    ["import fmnist.training_notes", "from fmnist import run_dir", "from . import tflite"],
)
def test_the_check_passes_other_imports(source: str) -> None:
    assert not imports_of(source, "fmnist.export", "fmnist.train")


def test_export_imports_nothing_from_the_training_stage() -> None:
    found = {
        path.name: imports_of(path.read_text(), "fmnist.export", "fmnist.train")
        for path in sorted((REPO / "export").glob("*.py"))
    }
    assert len(found) > 5
    assert {name: modules for name, modules in found.items() if modules} == {}


def test_shared_core_imports_without_tensorflow_or_scikit_learn(
    python_without, tmp_path: Path
) -> None:
    result = python_without(
        f"""
        import numpy as np
        import fmnist.dataset, fmnist.metrics, fmnist.preprocessing
        from fmnist.preprocessing import preprocess
        from fmnist.run_dir import RunDir
        run = RunDir({str(tmp_path)!r})
        run.write_config({{"val_fraction": 0.1, "seed": 42}})
        print(run.split(), preprocess(np.zeros((2, 28, 28), np.uint8)).shape)
        """,
        blocked=("tensorflow", "keras", "sklearn"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == ("ValidationSplit(val_fraction=0.1, seed=42) (2, 28, 28, 1)")


@pytest.mark.parametrize(
    "stage", ["fmnist.train", "fmnist.export", "fmnist.serving.server", "fmnist.pipeline"]
)
def test_rollout_imports_no_other_stage_internals(stage: str) -> None:
    """Rollout reads bundles, manifests, models.config and logs; it talks to servers through
    the clients and the wire, never through the server's or another stage's code."""
    found = {
        path.name: imports_of(path.read_text(), "fmnist.rollout", stage)
        for path in sorted((REPO / "rollout").glob("*.py"))
    }
    assert len(found) > 5
    assert {name: modules for name, modules in found.items() if modules} == {}


def test_rollout_imports_without_tensorflow(python_without) -> None:
    result = python_without(
        """
        import fmnist.rollout.cli, fmnist.rollout.compare, fmnist.rollout.promote
        import fmnist.rollout.replay, fmnist.rollout.report
        from fmnist.cli import main
        print(main(["replay", "/nonexistent/requests", "--grpc", "127.0.0.1:1"]))
        """,
        blocked=("tensorflow", "keras", "sklearn", "tensorflow_serving"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "2"
    assert "no log file name starts with it" in result.stderr  # not "needs 'tensorflow'"
