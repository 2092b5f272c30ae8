"""tf.Example requests by TF Serving's rules (classifier.cc, regressor.cc, multi_inference.cc):
an `Input`'s serialized examples, the checks of signatures and of a MultiInferenceRequest,
and results built from a model's outputs; shared by both servables, the data plane and
warm-up replay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.signature import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    REGRESS_METHOD,
    Signature,
)
from fmnist.serving.wire.status import Code, StatusError, invalid_argument

ExampleResult = pb.ClassificationResult | pb.RegressionResult
CLASSIFY_OUTPUTS = ("classes", "scores")


def serialized_examples(request_input: Any) -> list[bytes]:
    """tf.Examples of a Classify/Regress Input, serialized, each after the context's bytes
    (protobuf merges them; example features win, as in TF Serving)."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in request_input.example_list.examples]
    if kind == "example_list_with_context":
        with_context = request_input.example_list_with_context
        context = with_context.context.SerializeToString()
        return [context + e.SerializeToString() for e in with_context.examples]
    return []


def example_signature(
    signatures: Mapping[str, Signature], signature_name: str, method: str, check_method: bool
) -> tuple[str, Signature]:
    """The signature a Classify or Regress request names, checked as TF Serving checks it."""
    name = signature_name or DEFAULT_SIGNATURE
    signature = signatures.get(name)
    if signature is None:
        raise invalid_argument(f"No signature was found with the name: {name}")
    kind = "classification" if method == CLASSIFY_METHOD else "regression"
    if check_method and signature.method_name != method:
        raise invalid_argument(
            f"Expected {kind} signature method_name to be {method}. Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    outputs = len(signature.outputs)
    if method == CLASSIFY_METHOD and outputs not in (1, 2):
        raise invalid_argument(f"Expected one or two output Tensors, found {outputs}")
    if method == REGRESS_METHOD and outputs != 1:
        raise invalid_argument("Expected one output Tensor.")
    if "inputs" not in signature.inputs:
        raise invalid_argument(f"No {kind} inputs found in SignatureDef.")
    if method == CLASSIFY_METHOD and not set(CLASSIFY_OUTPUTS) & set(signature.outputs):
        raise invalid_argument(
            'Expected classification signature outputs to contain at least one of "classes" '
            'or "scores".'
        )
    if method == REGRESS_METHOD and "outputs" not in signature.outputs:
        raise invalid_argument("No regression outputs found in SignatureDef.")
    return name, signature


def result_aliases(method: str, signature: Signature) -> list[str]:
    """The outputs a checked signature's result is built from."""
    if method == CLASSIFY_METHOD:
        return [a for a in CLASSIFY_OUTPUTS if a in signature.outputs]
    return ["outputs"]


def build_result(
    method: str, outputs: Mapping[str, np.ndarray], num_examples: int
) -> ExampleResult:
    if method == CLASSIFY_METHOD:
        return classification_result(outputs, num_examples)
    return regression_result(outputs["outputs"], num_examples)


def classification_result(
    outputs: Mapping[str, np.ndarray], num_examples: int
) -> pb.ClassificationResult:
    """`classes` and/or `scores`, as PostProcessClassificationResult checks them."""
    classes, scores = outputs.get("classes"), outputs.get("scores")
    _check_classification_tensor("classes", classes, object, num_examples)
    _check_classification_tensor("scores", scores, np.float32, num_examples)
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid_argument(
            "Tensors class and score should match in dim_size(1). "
            f"Got {classes.shape[1]} vs. {scores.shape[1]}"
        )
    num_classes = (classes if classes is not None else scores).shape[1]
    result = pb.ClassificationResult()
    for i in range(num_examples):
        classifications = result.classifications.add()
        for j in range(num_classes):
            cls = classifications.classes.add()
            if classes is not None:
                cls.label = classes[i, j].decode("utf-8", "replace")
            if scores is not None:
                cls.score = float(scores[i, j])
    return result


def _check_classification_tensor(label: str, tensor: Any, dtype: type, examples: int) -> None:
    if tensor is None:
        return
    if tensor.ndim != 2:
        raise invalid_argument(
            f"Expected Tensor shape: [batch_size num_classes] but got {list(tensor.shape)}"
        )
    if tensor.dtype != dtype:
        wanted = "DT_STRING" if dtype is object else "DT_FLOAT"
        raise invalid_argument(f"Expected {label} Tensor of {wanted}.")
    if tensor.shape[0] != examples:
        raise invalid_argument(
            f"Expected {label} output batch size of {examples}. Got: {tensor.shape[0]}"
        )


def regression_result(values: np.ndarray, num_examples: int) -> pb.RegressionResult:
    """As PostProcessRegressionResult checks and converts the output."""
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
    result = pb.RegressionResult()
    for value in values.ravel().tolist():
        result.regressions.add(value=value)
    return result


# --- MultiInference ------------------------------------------------------------------------


def multi_inference_tasks(request: Any) -> tuple[list[tuple[str, str]], Any]:
    """A MultiInferenceRequest's (signature name, method name) tasks, checked before any
    model is looked at, and its first task's ModelSpec, which names the servable."""
    if not request.tasks:
        raise invalid_argument("Expected at least one task")
    model_name = request.tasks[0].model_spec.name
    for task in request.tasks:
        if not task.model_spec.name:
            raise invalid_argument("Found ModelSpec with an empty model name.")
        if task.model_spec.name != model_name:
            raise invalid_argument(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name."
            )
    tasks = [(t.model_spec.signature_name, t.method_name) for t in request.tasks]
    return tasks, request.tasks[0].model_spec


def check_task_signatures(
    signatures: Mapping[str, Signature], tasks: Sequence[tuple[str, str]]
) -> list[tuple[str, Signature]]:
    """Each (signature name, method) task's signature, checked as multi_inference.cc does."""
    seen: set[str] = set()
    checked = []
    for signature_name, method in tasks:
        name = signature_name or DEFAULT_SIGNATURE
        if name in seen:
            raise invalid_argument(f"Duplicate evaluation of signature: {name}")
        seen.add(name)
        if name not in signatures:
            raise invalid_argument(f"Requested signature not found in model graph: {name}")
        if method not in (CLASSIFY_METHOD, REGRESS_METHOD):
            raise StatusError(Code.UNIMPLEMENTED, f"Unsupported signature method_name: {method}")
        checked.append(example_signature(signatures, name, method, False))
    return checked
