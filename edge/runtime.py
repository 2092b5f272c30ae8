"""Which TFLite interpreter to use: ai-edge-litert, else tflite-runtime, else TF's own.

TensorFlow's `tf.lite` is used only if TensorFlow is already installed, and never
imported otherwise: the edge package must run on machines without it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import platform
from dataclasses import dataclass
from typing import Any

from fmnist.errors import UserError

RUNTIME_ENV = "FMNIST_EDGE_RUNTIME"

# (name users type, module holding `Interpreter`, distribution for the version string)
RUNTIMES = (
    ("litert", "ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite-runtime", "tflite_runtime.interpreter", "tflite-runtime"),
    # `tensorflow.lite` itself is an empty package: `tf.lite.Interpreter` lives here.
    ("tensorflow", "tensorflow.lite.python.interpreter", "tensorflow"),
)


class RuntimeMissing(UserError):
    """No TFLite interpreter is installed (or the requested one is not)."""


@dataclass(frozen=True)
class Runtime:
    name: str
    version: str
    interpreter_class: Any

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


def install_hint() -> str:
    """The pip line that gives this machine a TFLite runtime."""
    if platform.machine() in ("armv7l", "armv6l"):
        return "pip install 'tflite-runtime==2.14.*' 'numpy<2'  (32-bit Raspberry Pi OS)"
    return "pip install ai-edge-litert  (or: pip install 'fmnist-deploy[edge]')"


def _top_module_installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):  # blocked or half-installed
        return False


def _load(name: str, module: str, dist: str) -> Runtime:
    loaded = importlib.import_module(module)
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return Runtime(name=name, version=version, interpreter_class=loaded.Interpreter)


def select_runtime(preferred: str | None = None) -> Runtime:
    """The first installed runtime in order, or `preferred` (also from $FMNIST_EDGE_RUNTIME)."""
    preferred = preferred or os.environ.get(RUNTIME_ENV) or None
    known = [name for name, _, _ in RUNTIMES]
    if preferred and preferred not in known:
        raise RuntimeMissing(f"unknown runtime {preferred!r}; choose one of {', '.join(known)}")
    for name, module, dist in RUNTIMES:
        if preferred and name != preferred:
            continue
        if not _top_module_installed(module):
            continue
        try:
            return _load(name, module, dist)
        except (ImportError, AttributeError) as err:  # e.g. tflite-runtime 2.14 on numpy 2
            if preferred:
                raise RuntimeMissing(
                    f"runtime {name} is installed but fails to import: {err}"
                ) from None
    wanted = f"the {preferred} runtime" if preferred else "a TFLite runtime"
    raise RuntimeMissing(f"{wanted} is not installed; install one with: {install_hint()}")
