"""One SavedModel version, run the way TF Serving runs it: a session fed by signature tensor names.

TF Serving loads a SavedModel into a session and feeds the tensors a SignatureDef names;
it does not check request shapes against the signature (`{"instances": [1.0, 2.0]}`
feeds a `[-1, 1]` placeholder). Eager `signatures[...]` calls check shapes and cost
~6x more per call, so each version gets its own graph and session, and one compiled
session callable per (inputs, outputs) combination, built once and reused.
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
from tensorflow_serving.apis import classification_pb2, regression_pb2

from fmnist.serving import tensors
from fmnist.serving.status import ServingError, failed_precondition, invalid_argument

SERVE_TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
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


class SavedModelVersion:
    """A loaded version: its SignatureDefs and a private session to run them."""

    def __init__(self, version_dir: Path):
        self.path = version_dir
        meta_graph = read_meta_graph(version_dir)
        # A plain dict: indexing a protobuf map with a missing key would insert it.
        self.signature_defs: dict[str, meta_graph_pb2.SignatureDef] = dict(meta_graph.signature_def)
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph)
        try:
            with self._graph.as_default():
                tf.compat.v1.saved_model.loader.load(self._session, [SERVE_TAG], str(version_dir))
        except Exception as err:
            self._session.close()
            raise LoadError(f"cannot load {version_dir}: {err}") from err
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

    # --- running ---------------------------------------------------------------------

    def _callable(self, feeds: tuple[str, ...], fetches: tuple[str, ...]):
        key = (feeds, fetches)
        fn = self._callables.get(key)
        if fn is None:
            with self._lock:
                if len(self._callables) >= _MAX_CALLABLES:
                    self._callables.clear()
                options = config_pb2.CallableOptions(feed=feeds, fetch=fetches)
                # Session.make_callable() re-checks feed shapes in Python (TF Serving does
                # not); this is the C++ Session::MakeCallable path it wraps.
                fn = self._session._make_callable_from_options(options)
                self._callables[key] = fn
        return fn

    def run(self, feeds: Mapping[str, np.ndarray], fetches: Sequence[str]) -> list[np.ndarray]:
        """Run the graph: tensor name -> value in, arrays for the fetched tensor names out."""
        names = tuple(feeds)
        try:
            fn = self._callable(names, tuple(fetches))
            return fn(*(feeds[name] for name in names))
        except tf.errors.OpError as err:
            raise ServingError.from_number(err.error_code, err.message) from None
        except (ValueError, TypeError) as err:
            raise invalid_argument(str(err)) from None

    def predict(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
    ) -> tuple[str, dict[str, np.ndarray]]:
        """Run a signature on named inputs; returns the effective signature name and outputs."""
        name = signature_name or DEFAULT_SIGNATURE
        signature = self.signature_defs.get(name)
        if signature is None:
            raise failed_precondition(f'Serving signature key "{name}" not found.')
        feeds = self._feeds(signature, inputs)
        aliases = _output_aliases(signature, output_filter)
        values = self.run(feeds, [signature.outputs[a].name for a in aliases])
        return name, dict(zip(aliases, values, strict=True))

    def _feeds(
        self, signature: meta_graph_pb2.SignatureDef, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        expected, defaults = signature.inputs, signature.defaults
        missing = set(expected) - set(inputs) - set(defaults)
        extra = set(inputs) - set(expected)
        if missing or extra:
            sent, wanted = ",".join(sorted(inputs)), ",".join(sorted(expected))
            raise invalid_argument(
                f"input size does not match signature: {len(inputs)}!={len(expected)} "
                f"len({{{sent}}}) != len({{{wanted}}}). Sent extra: {{{','.join(sorted(extra))}}}. "
                f"Missing but required: {{{','.join(sorted(missing))}}}."
            )
        feeds = {}
        for alias, info in expected.items():
            value = inputs.get(alias)
            if value is None:
                value = tensors.to_ndarray(defaults[alias])
            actual = tensors.dtype_of(value)
            if actual != info.dtype:
                raise invalid_argument(
                    f"input '{alias}' is {tensors.dtype_name(actual)} but the signature "
                    f"expects {tensors.dtype_name(info.dtype)}"
                )
            feeds[info.name] = value
        return feeds

    def classify(
        self, signature_name: str, examples: Sequence[bytes], check_method: bool = False
    ) -> tuple[str, classification_pb2.ClassificationResult]:
        """Classify serialized tf.Examples with a classify-shaped signature."""
        name, signature = self._example_signature(signature_name, CLASSIFY_METHOD, check_method)
        if len(signature.outputs) not in (1, 2):
            raise invalid_argument(
                f"Expected one or two output Tensors, found {len(signature.outputs)}"
            )
        aliases = [a for a in ("classes", "scores") if a in signature.outputs]
        if not aliases:
            raise invalid_argument(
                'Expected classification signature outputs to contain at least one of "classes" '
                'or "scores".'
            )
        outputs = dict(zip(aliases, self._run_examples(signature, examples, aliases), strict=True))
        return name, _classification_result(outputs, len(examples))

    def regress(
        self, signature_name: str, examples: Sequence[bytes], check_method: bool = False
    ) -> tuple[str, regression_pb2.RegressionResult]:
        """Regress serialized tf.Examples with a regress-shaped signature."""
        name, signature = self._example_signature(signature_name, REGRESS_METHOD, check_method)
        if len(signature.outputs) != 1:
            raise invalid_argument("Expected one output Tensor.")
        if "outputs" not in signature.outputs:
            raise invalid_argument("No regression outputs found in SignatureDef.")
        (values,) = self._run_examples(signature, examples, ["outputs"])
        return name, _regression_result(values, len(examples))

    def _example_signature(
        self, signature_name: str, method: str, check_method: bool
    ) -> tuple[str, meta_graph_pb2.SignatureDef]:
        name = signature_name or DEFAULT_SIGNATURE
        signature = self.signature_defs.get(name)
        if signature is None:
            raise invalid_argument(f"No signature was found with the name: {name}")
        kind = "classification" if method == CLASSIFY_METHOD else "regression"
        if check_method and signature.method_name != method:
            raise invalid_argument(
                f"Expected {kind} signature method_name to be {method}. "
                f"Was: {signature.method_name}"
            )
        if len(signature.inputs) != 1:
            raise invalid_argument("Expected one input Tensor.")
        if "inputs" not in signature.inputs:
            raise invalid_argument(f"No {kind} inputs found in SignatureDef.")
        return name, signature

    def _run_examples(
        self, signature: meta_graph_pb2.SignatureDef, examples: Sequence[bytes], aliases: list[str]
    ) -> list[np.ndarray]:
        if not examples:
            raise invalid_argument("Input is empty.")
        batch = np.empty(len(examples), dtype=object)
        batch[:] = list(examples)
        feeds = {signature.inputs["inputs"].name: batch}
        return self.run(feeds, [signature.outputs[a].name for a in aliases])


def _output_aliases(
    signature: meta_graph_pb2.SignatureDef, output_filter: Sequence[str]
) -> list[str]:
    if not output_filter:
        return list(signature.outputs)
    seen: list[str] = []
    for alias in output_filter:
        if alias not in signature.outputs:
            raise invalid_argument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be "
                f"in the set {{{','.join(sorted(signature.outputs))}}}."
            )
        if alias in seen:
            raise invalid_argument(f"duplicate output tensor alias: {alias}")
        seen.append(alias)
    return seen


def _classification_result(
    outputs: dict[str, np.ndarray], num_examples: int
) -> classification_pb2.ClassificationResult:
    classes, scores = outputs.get("classes"), outputs.get("scores")
    for label, tensor, kind in (("classes", classes, "O"), ("scores", scores, "f")):
        if tensor is None:
            continue
        if tensor.ndim != 2:
            raise invalid_argument(
                f"Expected Tensor shape: [batch_size num_classes] but got {list(tensor.shape)}"
            )
        if (kind == "O") != (tensor.dtype == object) or (
            kind == "f" and tensor.dtype != np.float32
        ):
            wanted = "DT_STRING" if kind == "O" else "DT_FLOAT"
            raise invalid_argument(f"Expected {label} Tensor of {wanted}.")
        if tensor.shape[0] != num_examples:
            raise invalid_argument(
                f"Expected {label} output batch size of {num_examples}. Got: {tensor.shape[0]}"
            )
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid_argument(
            "Tensors class and score should match in dim_size(1). "
            f"Got {classes.shape[1]} vs. {scores.shape[1]}"
        )
    num_classes = (classes if classes is not None else scores).shape[1]
    result = classification_pb2.ClassificationResult()
    for i in range(num_examples):
        classifications = result.classifications.add()
        for j in range(num_classes):
            cls = classifications.classes.add()
            if classes is not None:
                cls.label = classes[i, j].decode("utf-8", "replace")
            if scores is not None:
                cls.score = float(scores[i, j])
    return result


def _regression_result(values: np.ndarray, num_examples: int) -> regression_pb2.RegressionResult:
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise invalid_argument(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
            f"{list(values.shape)}"
        )
    if values.shape[0] != num_examples:
        raise invalid_argument(
            "Input batch size did not match output batch size: "
            f"{num_examples} vs. {values.shape[0]}"
        )
    if values.dtype != np.float32:
        raise invalid_argument("Expected output Tensor of DT_FLOAT.")
    result = regression_pb2.RegressionResult()
    for value in values.ravel().tolist():
        result.regressions.add(value=value)
    return result
