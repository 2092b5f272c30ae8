"""Try a TFLite model in a child process before a long-lived process loads it.

Some TFLite kernels check their parameters with CHECK macros that abort the whole process
instead of returning an error: an int8 ADD whose scales need a rescaling multiplier the
kernel cannot represent does so in `allocate_tensors`. A server that loads such a model in
process dies with every model it serves. The child loads the model, allocates its
tensors and runs it once on zeros; if that kills the child, the caller refuses the model.

    python -m fmnist.edge.model_probe < MODEL.tflite   (exit 0: loaded and ran, or raised)

The model goes to the child on stdin: the bytes it tries are the bytes the caller read and
checked, whatever happens to the file meanwhile.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np

from fmnist.edge.runtime import RUNTIME_ENV, select_runtime

PROBE_TIMEOUT_S = 300.0  # a first invoke of a large model on a Raspberry Pi takes seconds


class ModelCrashed(Exception):
    """Loading or running the model killed the process that tried it."""


def check_in_child(content: bytes, runtime_name: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise ModelCrashed if `runtime_name`'s interpreter dies loading or running `content`.

    A Python exception in the child is not a crash: loading in process raises it again,
    with the caller's own handling."""
    env = {**os.environ, RUNTIME_ENV: runtime_name}
    command = [sys.executable, "-m", "fmnist.edge.model_probe"]
    try:
        done = subprocess.run(
            command, input=content, env=env, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise ModelCrashed(f"loading and running it once took longer than {timeout:g} s") from None
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        said = [line for line in done.stderr.decode(errors="replace").splitlines() if line.strip()]
        detail = f": {said[-1].strip()}" if said and "XNNPACK" not in said[-1] else ""
        raise ModelCrashed(
            f"the {runtime_name} interpreter killed the process that loaded it ({name}){detail}"
        )


def _zeros(details: dict) -> np.ndarray:
    shape = [max(1, int(d)) for d in details["shape"]]
    return np.zeros(shape, np.dtype(details["dtype"]))


def main() -> int:
    content = sys.stdin.buffer.read()
    interpreter = select_runtime().interpreter_class(model_content=content, num_threads=1)
    interpreter.allocate_tensors()
    inputs = interpreter.get_input_details()
    if all(np.dtype(d["dtype"]).kind in "biuf" for d in inputs):  # zeros of numbers only
        for details in inputs:
            interpreter.set_tensor(details["index"], _zeros(details))
        interpreter.invoke()
    return 0


if __name__ == "__main__":
    sys.exit(main())
