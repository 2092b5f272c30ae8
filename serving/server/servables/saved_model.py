"""One SavedModel version, run the way TF Serving runs it: its own graph and session, fed by
signature tensor names through one session callable per (inputs, outputs), built once
(docs/serving.md#serving-speed says why). Predict and the tf.Example APIs come from
`SignatureServable`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, saved_model_pb2

from fmnist.serving.server.servables import validation
from fmnist.serving.server.servables.base import SignatureServable
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire import tensor_proto
from fmnist.serving.wire.signature import Signature, from_signature_def
from fmnist.serving.wire.status import StatusError, invalid_argument

SERVE_TAG = "serve"
_MAX_CALLABLES = 64


class LoadError(Exception):
    """A version directory is not a loadable SavedModel."""


def read_meta_graph(version_dir: Path) -> meta_graph_pb2.MetaGraphDef:
    """The `serve`-tagged MetaGraphDef of saved_model.pb(txt), which holds the SignatureDefs."""
    saved_model = saved_model_pb2.SavedModel()
    binary, text = version_dir / "saved_model.pb", version_dir / "saved_model.pbtxt"
    try:
        if binary.is_file():
            saved_model.ParseFromString(binary.read_bytes())
        elif text.is_file():
            text_format.Parse(text.read_text(), saved_model)
        else:
            raise LoadError(f"{version_dir} has no saved_model.pb")
    except (OSError, text_format.ParseError, ValueError) as err:
        raise LoadError(f"cannot read {version_dir}: {err}") from err
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return meta_graph
    raise LoadError(f"{version_dir}: no MetaGraphDef tagged '{SERVE_TAG}'")


def _session(version_dir: Path, intra_op_threads: int, inter_op_threads: int):
    """A session of its own graph, the version loaded into it."""
    config = config_pb2.ConfigProto(
        intra_op_parallelism_threads=intra_op_threads, inter_op_parallelism_threads=inter_op_threads
    )
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph, config=config)
    try:
        with graph.as_default():
            tf.compat.v1.saved_model.loader.load(session, [SERVE_TAG], str(version_dir))
    except Exception as err:
        session.close()
        raise LoadError(f"cannot load {version_dir}: {err}") from err
    return session


class SavedModelServable(SignatureServable):
    """A loaded version: its SignatureDefs and a private session to run them."""

    def __init__(self, version_dir: Path, intra_op_threads: int = 0, inter_op_threads: int = 0):
        self.path = version_dir
        meta_graph = read_meta_graph(version_dir)
        # In a plain dict: indexing a protobuf map with a missing key would insert it.
        self.signature_defs: dict[str, pb.SignatureDef] = {
            name: pb.SignatureDef.FromString(proto.SerializeToString())
            for name, proto in meta_graph.signature_def.items()
        }
        self.signatures: dict[str, Signature] = {
            name: from_signature_def(proto) for name, proto in self.signature_defs.items()
        }
        self.defaults = {name: _defaults(proto) for name, proto in self.signature_defs.items()}
        self._session = _session(version_dir, intra_op_threads, inter_op_threads)
        # One op at a time anyway: run them on the caller's thread, sparing a hand-off to
        # TF's inter-op pool and back (TF's RunOptions.inter_op_thread_pool = -1).
        caller_thread = -1 if inter_op_threads == 1 else 0
        self._run_options = config_pb2.RunOptions(inter_op_thread_pool=caller_thread)
        self._callables: dict[tuple, object] = {}
        self._lock = threading.Lock()
        for signature in self.signature_defs.values():  # build the common callables up front
            if signature.inputs and signature.outputs:
                feeds = tuple(t.name for t in signature.inputs.values())
                # A broken signature fails when it is requested, not at load.
                with contextlib.suppress(tf.errors.OpError, ValueError):
                    self._callable(feeds, tuple(t.name for t in signature.outputs.values()))

    def close(self) -> None:
        self._callables.clear()
        self._session.close()

    def metadata(self) -> pb.SignatureDefMap:
        """The SignatureDefs exactly as saved_model.pb declares them (defaults included)."""
        answer = pb.SignatureDefMap()
        for name, signature in self.signature_defs.items():
            answer.signature_def[name].CopyFrom(signature)
        return answer

    # --- running ---------------------------------------------------------------------

    def _callable(self, feeds: tuple[str, ...], fetches: tuple[str, ...]):
        key = (feeds, fetches)
        fn = self._callables.get(key)
        if fn is None:
            with self._lock:
                if len(self._callables) >= _MAX_CALLABLES:
                    self._callables.clear()
                options = config_pb2.CallableOptions(
                    feed=feeds, fetch=fetches, run_options=self._run_options
                )
                # Private: make_callable() minus its per-call checks of the feeds (checked
                # already); docs/serving.md#serving-speed, test_private_tf_api.py.
                fn = self._session._make_callable_from_options(options)
                self._callables[key] = fn
        return fn

    def run(self, feeds: Mapping[str, np.ndarray], fetches: Sequence[str]) -> list[np.ndarray]:
        """Run the graph: tensor name -> value in, arrays for the fetched tensor names out."""
        names = tuple(feeds)
        try:
            fn = self._callable(names, tuple(fetches))
            values = fn(*(feeds[name] for name in names))
        except tf.errors.OpError as err:
            raise StatusError.from_number(err.error_code, err.message) from None
        except (ValueError, TypeError) as err:
            raise invalid_argument(str(err)) from None
        return [_ndarray(value) for value in values]

    def run_tensors(
        self,
        feeds: Mapping[str, np.ndarray],
        fetches: Sequence[str],
        rows: int | None,
        deadline: float | None = None,
        wait: bool = True,
    ) -> list[np.ndarray]:
        """`run` through `validation.run_in_chunks` (a session is never waited for)."""
        return validation.run_in_chunks(lambda part: self.run(part, fetches), feeds, rows, deadline)


def _ndarray(value: object) -> np.ndarray:
    """A session result as an array (a DT_STRING scalar, plain `bytes`: a 0-d object array)."""
    if not isinstance(value, (bytes, str)):
        return np.asarray(value)
    array = np.empty((), dtype=object)
    array[()] = value
    return array


def _defaults(signature: pb.SignatureDef) -> dict[str, np.ndarray]:
    """A signature's input defaults as arrays (one that does not convert is left out)."""
    values = {}
    for alias, proto in signature.defaults.items():
        with contextlib.suppress(StatusError, ValueError, TypeError):
            values[alias] = tensor_proto.to_ndarray(proto)
    return values
