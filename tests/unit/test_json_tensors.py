"""REST JSON <-> tensors by TF Serving's typing rules (wire/json_tensors.py, no TensorFlow).

JSON booleans feed DT_BOOL only; numbers never feed DT_BOOL; large numeric arrays take the
text fast path and give what the exact path gives.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fmnist.serving.wire import dtypes, json_fast, json_tensors
from fmnist.serving.wire.status import StatusError


@pytest.mark.parametrize(
    ("value", "dt", "expected"),
    [
        ([True, False], dtypes.DT_BOOL, np.array([True, False])),
        ([[True], [False]], dtypes.DT_BOOL, np.array([[True], [False]])),
        ([1, 2], dtypes.DT_UINT8, np.array([1, 2], np.uint8)),
        ([1, 2.5], dtypes.DT_FLOAT, np.array([1, 2.5], np.float32)),
    ],
)
def test_accepted(value, dt: int, expected: np.ndarray):
    array = json_tensors.from_json(value, dt)
    assert array.dtype == expected.dtype
    np.testing.assert_array_equal(array, expected)


@pytest.mark.parametrize(
    ("value", "dt", "message"),
    [
        ([True], dtypes.DT_UINT8, "JSON Value: true Type: True is not of expected type: uint8"),
        ([1, True], dtypes.DT_UINT8, "Type: True is not of expected type: uint8"),
        ([0.5, False], dtypes.DT_FLOAT, "Type: False is not of expected type: float"),
        ([1, 0], dtypes.DT_BOOL, "JSON Value: 1 Type: Number is not of expected type: bool"),
        (["a"], dtypes.DT_FLOAT, 'JSON Value: "a" Type: String is not of expected type'),
        ([None], dtypes.DT_FLOAT, "Type: Null is not of expected type: float"),
    ],
)
def test_refused(value, dt: int, message: str):
    with pytest.raises(StatusError) as caught:
        json_tensors.from_json(value, dt)
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("rows", "dt"),
    [
        ([[i % 256] * 28 for i in range(300)], dtypes.DT_UINT8),
        ([[i * 0.5, -i] for i in range(300)], dtypes.DT_FLOAT),
        ([[i, -i] for i in range(300)], dtypes.DT_INT64),
    ],
)
def test_fast_path_matches_the_exact_path(rows, dt: int):
    doc = json_fast.loads(json.dumps({"instances": rows}).encode())
    assert isinstance(doc["instances"], json_fast.NumericSpan)
    fast = json_tensors.from_json(doc["instances"], dt)
    exact = json_tensors.from_json(rows, dt)
    assert fast.dtype == exact.dtype
    np.testing.assert_array_equal(fast, exact)


@pytest.mark.parametrize(
    "rows",
    [[[1, 2]] * 150 + [[1]], [[1, 2]] * 150 + [[1, 300]], [[1, 2]] * 150 + [[1, 2.5]]],
    ids=["ragged", "out-of-range", "not-an-integer"],
)
def test_fast_path_refusals_get_the_exact_paths_error(rows):
    doc = json_fast.loads(json.dumps({"instances": rows}).encode())
    with pytest.raises(StatusError) as fast:
        json_tensors.from_json(doc["instances"], dtypes.DT_UINT8)
    with pytest.raises(StatusError) as exact:
        json_tensors.from_json(rows, dtypes.DT_UINT8)
    assert fast.value.message == exact.value.message


def test_large_outputs_are_encoded_in_chunks_exactly_as_json_dumps_writes_them():
    values = np.random.default_rng(0).random((70_000, 2), dtype=np.float32)
    values[0, 0], values[1, 1], values[2, 0] = np.nan, np.inf, -np.inf
    text = json_tensors.to_json_text(values, "y")
    assert text == json_tensors.dump_json(json_tensors.to_json(values, "y"))
    columns = {"a": values, "b": np.arange(70_000, dtype=np.int64)}
    rows = b"".join(json_tensors.rows_json_parts(columns))
    expected = [
        {"a": a, "b": b}
        for a, b in zip(json_tensors.to_json(values, "a"), range(70_000), strict=True)
    ]
    assert rows == json_tensors.dump_json(expected)
