"""The serving layout as a contract: the client and the wire import nothing from the server,
the wire nothing from either side, and the wire needs no TensorFlow, TF Serving package or
grpcio (its messages are the project's own; only exotic output dtypes borrow TF's codec)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVING = Path(__file__).resolve().parents[2] / "serving"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any level (lazy imports inside functions too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _files(package: str) -> list[Path]:
    return sorted((SERVING / package).glob("*.py"))


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("client", "fmnist.serving.server"),
        ("wire", "fmnist.serving.server"),
        ("wire", "fmnist.serving.client"),
    ],
)
def test_package_does_not_import(package: str, forbidden: str) -> None:
    offenders = {
        path.name: sorted(n for n in _imports(path) if n.startswith(forbidden))
        for path in _files(package)
    }
    assert not {name: found for name, found in offenders.items() if found}


def test_the_wire_imports_no_tensorflow_serving_and_no_grpc() -> None:
    offenders = {
        path.name
        for path in _files("wire")
        if any(n.split(".")[0] in {"tensorflow_serving", "grpc"} for n in _imports(path))
    }
    assert offenders == set()


def test_only_the_tensor_proto_codec_imports_tensorflow() -> None:
    uses_tf = {
        path.name
        for path in _files("wire")
        if any(
            n.split(".")[0] in {"tensorflow", "tensorflow_serving", "grpc"} for n in _imports(path)
        )
    }
    assert uses_tf == {"tensor_proto.py"}
