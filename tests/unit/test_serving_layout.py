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


# --- the server's own layout ----------------------------------------------------------------

SERVER_PACKAGE = "fmnist.serving.server"
# Lower layers never import higher ones: transport moves bytes, servables run models, core
# holds the versions and the data plane, api translates wire formats; app/cli compose.
LAYERS = {"transport": 0, "servables": 1, "core": 2, "api": 3, "": 4}


def _server_graph(root: Path) -> dict[str, set[str]]:
    """Server module (relative, e.g. `core.registry`) -> the server modules it imports
    (`from x import y` counts y when y is a module)."""
    modules = {
        ".".join(path.relative_to(root).with_suffix("").parts): path
        for path in root.rglob("*.py")
        if path.name != "__init__.py"
    }
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in _imports(path):
            if name.startswith(SERVER_PACKAGE + "."):
                relative = name[len(SERVER_PACKAGE) + 1 :]
                while relative and relative not in modules:
                    relative = relative.rpartition(".")[0]
                targets.add(relative)
        graph[module] = targets - {"", module}
    return graph


def _layer(module: str) -> int:
    return LAYERS[module.rpartition(".")[0]]


def _upward_imports(root: Path) -> set[str]:
    graph = _server_graph(root)
    return {f"{m} -> {t}" for m, targets in graph.items() for t in targets if _layer(t) > _layer(m)}


def _cycle(root: Path) -> list[str]:
    """One import cycle among the server's modules, or [] when there is none."""
    graph = _server_graph(root)
    done: set[str] = set()

    def visit(module: str, stack: list[str]) -> list[str]:
        if module in stack:
            return [*stack[stack.index(module) :], module]
        if module in done:
            return []
        for target in sorted(graph[module]):
            found = visit(target, [*stack, module])
            if found:
                return found
        done.add(module)
        return []

    return next((c for c in (visit(m, []) for m in sorted(graph)) if c), [])


def test_every_server_module_sits_in_a_known_layer() -> None:
    assert {m.rpartition(".")[0] for m in _server_graph(SERVING / "server")} <= set(LAYERS)


def test_no_server_module_imports_a_higher_layer() -> None:
    assert _upward_imports(SERVING / "server") == set()


def test_server_imports_have_no_cycle() -> None:
    assert _cycle(SERVING / "server") == []


def _fake_server(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_checks_find_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    root = _fake_server(
        tmp_path,
        {
            "core/a.py": f"from {SERVER_PACKAGE}.core import b\n",
            "core/b.py": f"import {SERVER_PACKAGE}.core.a\n",
            "servables/c.py": f"def f():\n    from {SERVER_PACKAGE}.api.d import x\n",
            "api/d.py": "x = 1\n",
        },
    )
    assert _cycle(root) == ["core.a", "core.b", "core.a"]
    assert _upward_imports(root) == {"servables.c -> api.d"}


@pytest.mark.parametrize("package", ["client", "wire", "server"])
def test_serving_imports_nothing_private_from_other_packages(package: str) -> None:
    private = set()
    for path in (SERVING / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fmnist"):
                inside = node.module.startswith(f"fmnist.serving.{package}")
                private |= {
                    f"{path.name}: {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not inside
                }
    assert private == set()


# --- what each layer may do (issue 49) -------------------------------------------------------


def _names(path: Path) -> set[str]:
    """Every name and attribute a file uses."""
    nodes = list(ast.walk(ast.parse(path.read_text())))
    return {n.id for n in nodes if isinstance(n, ast.Name)} | {
        n.attr for n in nodes if isinstance(n, ast.Attribute)
    }


def _server_files(layer: str) -> list[Path]:
    return sorted((SERVING / "server" / layer).glob("*.py"))


def test_the_apis_import_nothing_from_the_servables() -> None:
    """api/ sees models only through the data plane (core/)."""
    offenders = {
        path.name: sorted(n for n in _imports(path) if n.startswith(f"{SERVER_PACKAGE}.servables"))
        for path in _server_files("api")
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_methods_are_declared_without_grpc() -> None:
    """The APIs declare their methods where grpcio is not needed; only the gRPC server
    module imports grpc."""
    methods = SERVING / "server" / "transport" / "methods.py"
    assert "class Method" in methods.read_text()
    uses_grpc = {
        str(path.relative_to(SERVING / "server"))
        for path in (SERVING / "server").rglob("*.py")
        if any(n.split(".")[0] == "grpc" for n in _imports(path))
    }
    assert uses_grpc == {"transport/grpc_server.py"}


def test_core_hands_the_apis_plain_results() -> None:
    """core/ builds no wire response: the APIs do, from the data plane's plain results."""
    built = {
        path.name: sorted(n for n in _names(path) if n.endswith("Response"))
        for path in _server_files("core")
    }
    assert {name: found for name, found in built.items() if found} == {}


def test_only_the_placement_hands_request_work_to_threads() -> None:
    """One place decides where a request's work runs (core/placement.py): the transports
    and the APIs hand none to a pool themselves."""
    handing = {"run_in_executor", "to_thread", "ThreadPoolExecutor", "submit", "wrap_future"}
    offenders = {
        str(path.relative_to(SERVING / "server")): sorted(_names(path) & handing)
        for layer in ("api", "transport")
        for path in _server_files(layer)
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_http_transport_uses_no_tornado_private() -> None:
    """Tornado through its public API only: no attribute of Tornado's own whose name starts
    with an underscore (read from the installed Tornado, so a rename shows too), and no
    stream's class swapped."""
    import tornado.httpserver
    import tornado.iostream
    import tornado.web

    tornado_classes = (
        tornado.web.RequestHandler,
        tornado.iostream.IOStream,
        tornado.httpserver.HTTPServer,
    )
    privates = {
        name
        for cls in tornado_classes
        for name in dir(cls)
        if name.startswith("_") and not name.endswith("__")
    }
    privates |= {"_read_buffer", "_finished", "_reason"}  # the ones used before issue 49
    for path in _server_files("transport"):
        used = _names(path)
        assert used & privates == set(), path.name
        assert "__class__" not in used, path.name


def test_core_and_servables_import_nothing_from_the_transports() -> None:
    """Which transport carried a request is the APIs' business: the data plane decides where
    work runs by API name, and servables run models, synchronously."""
    offenders = {
        str(path.relative_to(SERVING / "server")): sorted(
            n for n in _imports(path) if n.startswith(f"{SERVER_PACKAGE}.transport")
        )
        for layer in ("core", "servables")
        for path in _server_files(layer)
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_no_sync_and_async_twins() -> None:
    """One async data plane entry per method: no `*_async` / `async_*` twin of a function."""
    twins = {
        f"{path.name}:{node.name}"
        for path in (SERVING / "server").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and (node.name.endswith("_async") or node.name.startswith("async_"))
    }
    assert twins == set()


def _modules_with(text: str) -> set[str]:
    """Server modules with `text` in a string literal or a name they use."""
    found = set()
    for path in (SERVING / "server").rglob("*.py"):
        nodes = list(ast.walk(ast.parse(path.read_text())))
        strings = [
            n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)
        ]
        if any(text in s for s in strings) or text in _names(path):
            found.add(str(path.relative_to(SERVING / "server")))
    return found


def test_the_ready_line_is_written_and_read_in_one_module() -> None:
    assert _modules_with("fmnist serve: gRPC") == {"process.py"}


def test_signals_are_handled_in_one_place() -> None:
    """One serve-until-signal (app.py), its handlers on the event loop, for one process or
    many: no `signal.signal` handler anywhere."""
    handlers = set()
    for path in (SERVING / "server").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            if node.attr == "add_signal_handler" or (
                node.attr == "signal" and getattr(node.value, "id", "") == "signal"
            ):
                handlers.add(f"{path.relative_to(SERVING / 'server')}:{node.attr}")
    assert handlers == {"app.py:add_signal_handler"}


@pytest.mark.parametrize(
    ("grpc_port", "rest_port"), [(8500, 8501), (None, 8501), (8500, None), (1, 65535)]
)
def test_the_ready_line_reads_back_its_ports(grpc_port, rest_port) -> None:
    from fmnist.serving.server.process import READY, ready_line

    match = READY.search(ready_line("127.0.0.1", grpc_port, rest_port))
    ports = [int(p) if p else None for p in (match.group(2), match.group(3))]
    assert ports == [grpc_port, rest_port]
