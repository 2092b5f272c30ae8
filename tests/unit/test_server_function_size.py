"""Issue 49's readability target: no function in serving/server longer than 40 lines, but
the flag declarations (one argparse call per TF Serving flag, nothing to split)."""

from __future__ import annotations

import ast
from pathlib import Path

SERVER = Path(__file__).resolve().parents[2] / "serving" / "server"
MOST_LINES = 40
FLAG_DECLARATIONS = {
    "cli.py": {
        "_add_transport_flags",
        "_add_models_flags",
        "_add_runtime_flags",
        "_add_logging_flags",
    }
}


def _function_lengths(root: Path) -> dict[str, int]:
    """`file.py:function` -> its lines (decorators excluded, docstring included)."""
    lengths = {}
    for path in sorted(root.rglob("*.py")):
        relative = str(path.relative_to(root))
        for node in ast.walk(ast.parse(path.read_text())):
            function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            if function and node.name not in FLAG_DECLARATIONS.get(relative, set()):
                key = f"{relative}:{node.name}:{node.lineno}"
                lengths[key] = node.end_lineno - node.lineno + 1
    return lengths


def test_no_server_function_is_longer_than_40_lines() -> None:
    too_long = {k: n for k, n in _function_lengths(SERVER).items() if n > MOST_LINES}
    assert too_long == {}


def test_the_flag_declarations_excluded_exist() -> None:
    """An exclusion that no longer names a function would hide nothing, silently."""
    for name, functions in FLAG_DECLARATIONS.items():
        tree = ast.parse((SERVER / name).read_text())
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert functions <= defined


def test_the_measure_finds_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MOST_LINES))
    (tmp_path / "long.py").write_text(f"def long():\n{body}\n")
    (tmp_path / "short.py").write_text("def short():\n    return 1\n")
    assert _function_lengths(tmp_path) == {"long.py:long:1": MOST_LINES + 1, "short.py:short:1": 2}
