"""REST JSON decoding: numeric arrays from text straight to numpy, with the exact path's
verdicts (pure logic: no TensorFlow, no processes)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fmnist.serving.wire import json_fast
from fmnist.serving.wire.json_fast import NumericSpan
from fmnist.serving.wire.status import Code, StatusError


@pytest.fixture(autouse=True, params=["orjson", "vectorized"])
def span_route(request, monkeypatch):
    """Every test runs twice: small spans through orjson (the default), and through the
    vectorized passes that large spans take."""
    if request.param == "vectorized":
        monkeypatch.setattr(json_fast, "SMALL_SPAN_BYTES", -1)
    return request.param


def span(text: str) -> NumericSpan:
    data = text.encode()
    return NumericSpan(data, 0, len(data))


@pytest.mark.parametrize(
    ("text", "dtype", "expected"),
    [
        ("[1,2,3]", np.float32, [1, 2, 3]),
        ("[[1,2],[3,4]]", np.float32, [[1, 2], [3, 4]]),
        (" [ [ 1 , 2 ] ,\n [ 3 , 4 ] ] ", np.float64, [[1, 2], [3, 4]]),
        ("[-1e-3, 2E+5, 0.25, -0, 10, 1e01]", np.float32, [-1e-3, 2e5, 0.25, 0, 10, 10]),
        ("[NaN, Infinity, -Infinity]", np.float32, [np.nan, np.inf, -np.inf]),
        ("[[[0]],[[255]]]", np.uint8, [[[0]], [[255]]]),
        ("[-128, 127]", np.int8, [-128, 127]),
        ("[18446744073709551614]", np.uint64, [18446744073709551614]),
        ("[[],[]]", np.float32, np.zeros((2, 0))),
        ("[]", np.float32, np.zeros((0,))),
    ],
)
def test_valid_numeric_arrays_convert_exactly(text: str, dtype, expected, span_route):
    if span_route == "vectorized":
        array = span(text).to_array(np.dtype(dtype))
    else:
        array = json_fast._small_span_to_array(span(text), np.dtype(dtype))
        if "NaN" in text:  # orjson refuses NaN and Infinity: the vectorized path reads them
            assert array is None
            array = span(text).to_array(np.dtype(dtype))
    want = np.array(expected, dtype=dtype)
    assert array is not None and array.dtype == want.dtype and array.shape == want.shape
    np.testing.assert_array_equal(array, want)


@pytest.mark.parametrize(
    ("text", "dtype"),
    [
        ("[[1,2],[3]]", np.float32),  # ragged
        ("[[1],[2,3]]", np.float32),  # ragged, same count as a 2x2
        ("[[1,2],[3,4],[5,6,7]]", np.float32),  # ragged, count matches the first-path shape
        ("[[[1]],[2]]", np.float32),  # a scalar where a list belongs
        ("[1,[2]]", np.float32),  # a list where a scalar belongs
        ("[01]", np.float32),  # leading zero
        ("[-01]", np.float32),
        ("[.5]", np.float32),
        ("[1.]", np.float32),
        ("[+1]", np.float32),
        ("[1e]", np.float32),
        ("[1e+]", np.float32),
        ("[--1]", np.float32),
        ("[1-2]", np.float32),
        ("[nan]", np.float32),  # JSON spells it NaN
        ("[inf]", np.float32),
        ("[1NaN]", np.float32),
        ("[-NaN]", np.float32),  # json has no negative NaN
        ("[1 2]", np.float32),
        ("[1,,2]", np.float32),
        ("[1,]", np.float32),
        ("[1e400]", np.float32),  # no double holds it
        ("[256]", np.uint8),  # out of range: the exact path words the error
        ("[-1]", np.uint64),
        ("[1.5]", np.int32),  # not an integer
        ("[1e3]", np.int32),
        ("[9223372036854775807]", np.int64),  # may have saturated: the exact path decides
        ("[1]", np.bool_),  # numbers are not booleans
    ],
)
def test_anything_not_provably_valid_goes_to_the_exact_path(text: str, dtype):
    assert span(text).to_array(np.dtype(dtype)) is None


def test_span_ending_mid_chunk_and_many_chunks_agree_with_json(monkeypatch):
    monkeypatch.setattr(json_fast, "_CHUNK", 64)  # force many chunk boundaries
    rows = [[i * 0.25, -i, 1e-3 * i] for i in range(500)]
    text = json.dumps(rows)
    np.testing.assert_array_equal(span(text).to_array(np.dtype(np.float64)), np.array(rows))
    assert span(text.replace("[0.0, 0, 0.0]", "[0.0, 0]")).to_array(np.dtype(np.float64)) is None


def test_loads_leaves_large_numeric_arrays_as_spans_and_the_rest_as_json():
    rows = [[0.5]] * 200
    doc = json_fast.loads(json.dumps({"signature_name": "s", "instances": rows, "x": [1]}).encode())
    assert doc["signature_name"] == "s" and doc["x"] == [1]
    assert isinstance(doc["instances"], NumericSpan)
    assert doc["instances"].load() == rows
    np.testing.assert_array_equal(doc["instances"].to_array(np.dtype(np.float32)), rows)


@pytest.mark.parametrize(
    "body",
    [
        {"s": "[" + "1," * 300 + "1]"},  # numeric-looking text inside a string stays a string
        {"instances": [[0.5]] * 200 + ["x"]},  # mixed arrays stay Python lists
        {"instances": [{"a": [0.5] * 100, "b": "x"}] * 3},  # spans inside objects
        {"instances": [True] + [1] * 300},
    ],
)
def test_loads_round_trips_what_json_reads(body):
    doc = json_fast.loads(json.dumps(body).encode())
    restored = json.loads(json.dumps(doc, default=lambda v: v.load()))
    assert restored == body


@pytest.mark.parametrize(
    "text",
    [
        "[" + "9" * 4300 + "]",
        "[" + "9" * 400 + "]",
        "[1e400]",
        "[" + ",".join(["9" * 4300] * 9) + "]",
    ],
)
def test_numbers_no_double_holds_are_an_invalid_argument(text: str):
    with pytest.raises(StatusError) as caught:
        json_fast.plain_loads(text.encode())
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert "Number too big" in caught.value.message


def test_beyond_64_bit_integers_are_read_as_doubles():
    assert json_fast.plain_loads(b"[18446744073709551616, -9223372036854775808]") == [
        1.8446744073709552e19,
        -9223372036854775808,
    ]


def test_a_passed_deadline_stops_decoding():
    body = json.dumps({"instances": [[0.5]] * 1000}).encode()
    with pytest.raises(StatusError) as caught:
        json_fast.loads(body, deadline=time.monotonic() - 1)
    assert caught.value.code == Code.DEADLINE_EXCEEDED
    doc = json_fast.loads(body)
    with pytest.raises(StatusError):
        doc["instances"].to_array(np.dtype(np.float32), deadline=time.monotonic() - 1)


def test_arrays_nested_deeper_than_64_levels_are_not_spans():
    text = "[ " * 65 + "1" + " ]" * 65
    doc = json_fast.loads(('{"instances": ' + text + "}").encode())
    assert isinstance(doc["instances"], list)


def test_memory_per_body_byte_is_bounded():
    """A 6 MiB body of [[0.5], ...] rows: the skeleton and output dominate, not Python lists."""
    import tracemalloc

    body = b'{"instances": [' + b"[0.5]," * (1 << 20) + b"[0.5]]}"
    tracemalloc.start()
    array = json_fast.loads(body)["instances"].to_array(np.dtype(np.float32))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert array.shape == ((1 << 20) + 1, 1)
    assert peak < 3 * len(body)  # Python lists would take ~17 bytes per body byte


@pytest.mark.parametrize(
    "tail",
    [', "x": ]}', "", ',\n\n  "y": [1, 2,]}', "]"],
    ids=["bad-value", "truncated", "multi-line", "extra-bracket"],
)
def test_invalid_json_around_spans_is_reported_where_json_reports_it(tail: str):
    body = (json.dumps({"instances": [[0.5]] * 100}, indent=1)[:-2] + tail).encode()
    with pytest.raises(ValueError) as expected:
        json.loads(body)
    with pytest.raises(ValueError) as got:
        json_fast.loads(body)
    assert str(got.value) == str(expected.value)


# --- differential: the fast path never answers what the exact path would not ---------------

_NUMBER_TEXT = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "-0", "1e5", "1E-5", "01", ".5", "1.", "+1"]),
)
_NESTED = st.recursive(_NUMBER_TEXT, lambda inner: st.lists(inner, max_size=4), max_leaves=40)


def _render(value, space: str) -> str:
    if isinstance(value, str):
        return value
    return "[" + f",{space}".join(_render(v, space) for v in value) + "]"


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(
    value=_NESTED,
    space=st.sampled_from(["", " ", "\n "]),
    cut=st.integers(0, 10**6),
    insert=st.sampled_from(["", "[", "]", ",", " ", "1", "e", "-", "."]),
    dtype=st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.uint8]),
)
def test_fast_path_agrees_with_json_whenever_it_answers(value, space, cut, insert, dtype):
    text = _render(value if isinstance(value, list) else [value], space)
    cut %= len(text) + 1
    text = text[:cut] + insert + text[cut:]  # sometimes valid, often not
    array = span(text).to_array(np.dtype(dtype))
    if array is None:
        return  # the exact path decides
    parsed = json.loads(text)  # must not raise: the fast path said it was valid JSON
    want = np.array(parsed, dtype=np.float64)
    assert array.shape == want.shape
    if np.issubdtype(dtype, np.integer):
        assert np.all(want == np.round(want))  # no fraction was truncated
        assert np.all((want >= np.iinfo(dtype).min) & (want <= np.iinfo(dtype).max))
    np.testing.assert_array_equal(array, want.astype(dtype))
