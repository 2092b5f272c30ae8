"""What the server's one private TensorFlow API buys: `Session._make_callable_from_options`.

    python benchmarks/bench_session_callable.py --out session_callable.json
    python benchmarks/bench_session_callable.py --model artifacts/models/fashion_mnist/1

`SavedModelServable` runs signatures through the C++ `Session::MakeCallable` path that
`Session.make_callable()` wraps. The public wrapper re-checks every feed's shape in Python
against the graph (TF Serving does not, and our own validation already has), and plain
`Session.run` parses feeds and fetches on every call. This loads a SavedModel version,
then times one batch-1 call each way, interleaved round by round so that load on the
machine hits all three alike. Prints medians and ratios, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO.parent / "shared/fixtures/tf-serving-testdata/saved_model_half_plus_two_cpu/00000123"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=FIXTURE, help="a SavedModel version dir")
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import tensorflow as tf
    from tensorflow.core.protobuf import config_pb2

    from fmnist.serving.server.servables.saved_model import SavedModelServable
    from fmnist.serving.wire.dtypes import numpy_dtype

    model = SavedModelServable(args.model)
    signature = model.signature_defs["serving_default"]
    (alias, info), *_ = signature.inputs.items()
    shape = [1 if d.size == -1 else d.size for d in info.tensor_shape.dim]
    value = np.zeros(shape, dtype=numpy_dtype(info.dtype))
    fetches = [t.name for t in signature.outputs.values()]
    session, graph = model._session, model._graph
    with graph.as_default():
        feed_tensor = graph.get_tensor_by_name(info.name)
    ways = {
        "Session.run": lambda: session.run(fetches, {info.name: value}),
        "make_callable (public)": session.make_callable(fetches, [feed_tensor]),
        "_make_callable_from_options": session._make_callable_from_options(
            config_pb2.CallableOptions(feed=[info.name], fetch=fetches)
        ),
    }
    calls = {
        "Session.run": ways["Session.run"],
        "make_callable (public)": lambda: ways["make_callable (public)"](value),
        "_make_callable_from_options": lambda: ways["_make_callable_from_options"](value),
    }
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - start)
    private = statistics.median(seconds["_make_callable_from_options"])
    rows = [
        {
            "way": name,
            "median_us": round(statistics.median(values) * 1e6, 1),
            "vs_private": round(statistics.median(values) / private, 2),
        }
        for name, values in seconds.items()
    ]
    print(f"model {args.model} (input {alias} {shape}), {args.rounds} rounds, TF {tf.__version__}")
    print(f"{'way':<30} {'median us':>10} {'x private':>10}")
    for row in rows:
        print(f"{row['way']:<30} {row['median_us']:>10} {row['vs_private']:>10}")
    if args.out:
        args.out.write_text(json.dumps({"model": str(args.model), "rows": rows}, indent=2))
    model.close()


if __name__ == "__main__":
    main()
