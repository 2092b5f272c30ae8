"""Request validation against a signature's declared shapes, and batch chunking (pure logic:
no TensorFlow, no processes)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fmnist.serving.server.servables import validation
from fmnist.serving.server.servables.validation import TensorSpec
from fmnist.serving.wire import dtypes
from fmnist.serving.wire.status import Code, StatusError

IMAGES = TensorSpec("images", (-1, 28, 28))


def _info(dims: list[int] | None) -> SimpleNamespace:
    """A stand-in for a SignatureDef TensorInfo: just the fields `from_tensor_info` reads."""
    shape = SimpleNamespace(
        unknown_rank=dims is None, dim=[SimpleNamespace(size=d) for d in dims or []]
    )
    return SimpleNamespace(tensor_shape=shape)


def _error(call, *args) -> StatusError:
    with pytest.raises(StatusError) as caught:
        call(*args)
    assert caught.value.code == Code.INVALID_ARGUMENT
    return caught.value


@pytest.mark.parametrize(
    ("dims", "expected"),
    [(None, None), ([], ()), ([-1, 28, 28], (-1, 28, 28)), ([-1, 1], (-1, 1))],
)
def test_spec_from_tensor_info(dims, expected):
    assert TensorSpec.from_tensor_info("x", _info(dims)).shape == expected


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((), "expected: [?,28,28], actual: []"),  # rank 0
        ((784,), "actual: [784]"),  # a flattened image
        ((1, 784), "actual: [1,784]"),
        ((1, 28, 28, 1), "actual: [1,28,28,1]"),  # NHWC
        ((1, 0), "actual: [1,0]"),  # {"instances": [[]]}
        ((1,) * 32, "actual: [" + ",".join(["1"] * 32) + "]"),
        ((2, 27, 28), "actual: [2,27,28]"),  # a fixed dimension off by one
        ((2, 28, 0), "actual: [2,28,0]"),
    ],
)
def test_a_shape_off_the_signature_is_invalid_argument_naming_the_input(shape, message):
    error = _error(validation.check_shape, "serving_default", IMAGES, shape)
    assert error.message.startswith("signature serving_default input 'images' shape is wrong")
    assert message in error.message


@pytest.mark.parametrize("shape", [(0, 28, 28), (1, 28, 28), (85_000, 28, 28)])
def test_shapes_on_the_signature_pass(shape):
    validation.check_shape("serving_default", IMAGES, shape)


@pytest.mark.parametrize("shape", [(), (3,), (1, 2, 3, 4, 5, 6), (0,)])
def test_an_unknown_rank_takes_any_shape(shape):
    validation.check_shape("s", TensorSpec("x", None), shape)


@pytest.mark.parametrize(
    ("declared", "shape"),
    [((-1, 1), (3,)), ((1,), (3,)), ((), (2,)), ((-1,), (2, 2)), ((-1, 1), ())],
)
def test_per_element_signatures_keep_tf_servings_leniency(declared, shape):
    # half_plus_two's [-1, 1] takes {"instances": [1.0, 2.0, 5.0]} in TF Serving.
    spec = TensorSpec("x", declared)
    assert not spec.enforced
    validation.check_shape("s", spec, shape)


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        ((1,) * 33, "33 dimensions which is over the limit of 32"),
        ((1,) * 300, "300 dimensions"),
        ((2, -1), "has negative dimensions"),
        ((10**9, 10**9, 10**9), "is too large"),
        ((0, 2**40, 2**40), "is too large"),  # no elements, but not addressable either
    ],
)
def test_unrepresentable_dims_are_refused_before_any_allocation(dims, message):
    assert message in _error(dtypes.check_dims, dims).message


def test_the_byte_count_takes_the_item_size():
    assert dtypes.check_dims((2**60,), 1) == 2**60
    assert "too large" in _error(dtypes.check_dims, (2**60,), 8).message


@pytest.mark.parametrize(
    ("dims", "count"), [((), 1), ((0,), 0), ((0, 10**6, 10**6), 0), ((1000, 28, 28), 784_000)]
)
def test_check_dims_returns_the_element_count(dims, count):
    assert dtypes.check_dims(dims) == count


def test_check_inputs_names_the_first_bad_input_in_alias_order():
    specs = {"a": TensorSpec("a", (-1, 2)), "b": TensorSpec("b", (-1, 3))}
    error = _error(validation.check_inputs, "sig", specs, {"b": (1, 4), "a": (1, 5)})
    assert "input 'a'" in error.message


@pytest.mark.parametrize(
    ("specs", "shapes", "outputs", "rows"),
    [
        ({"x": (-1, 28, 28)}, {"x": (1000, 28, 28)}, [(-1, 10), (-1,)], 1000),
        ({"x": (-1, 28, 28)}, {"x": (0, 28, 28)}, [(-1, 10)], 0),
        ({"x": (-1, 2), "y": (-1,)}, {"x": (5, 2), "y": (5,)}, [None], 5),
        ({"x": (-1, 2), "y": (-1,)}, {"x": (5, 2), "y": (4,)}, [], None),  # batch sizes differ
        ({"x": (-1, 2), "n": ()}, {"x": (5, 2), "n": ()}, [], None),  # a scalar input
        ({"x": (1, 28, 28)}, {"x": (1, 28, 28)}, [], None),  # a fixed batch
        ({"x": None}, {"x": (5, 2)}, [], None),  # unknown rank
        ({"x": (-1, 1)}, {"x": ()}, [], None),  # a scalar fed to a lenient signature
        ({"x": (-1, 28, 28)}, {"x": (9, 28, 28)}, [(10,)], None),  # an unbatched output
    ],
)
def test_batch_rows_only_when_every_input_and_output_is_batched(specs, shapes, outputs, rows):
    specs = {alias: TensorSpec(alias, shape) for alias, shape in specs.items()}
    outputs = [TensorSpec(f"out{i}", shape) for i, shape in enumerate(outputs)]
    assert validation.batch_rows(specs, shapes, outputs) == rows


@pytest.mark.parametrize(
    ("declared", "empty"),
    [((-1, 10), (0, 10)), ((-1,), (0,)), ((-1, -1), None), ((10,), None), (None, None)],
)
def test_empty_output_shape_for_a_zero_row_batch(declared, empty):
    assert validation.empty_output_shape(TensorSpec("y", declared)) == empty


@pytest.mark.parametrize(
    ("rows", "size", "bounds"),
    [
        (0, 256, []),
        (10, 256, [(0, 10)]),
        (256, 256, [(0, 256)]),
        (600, 256, [(0, 256), (256, 512), (512, 600)]),
    ],
)
def test_chunks_cover_the_batch_in_order(rows, size, bounds):
    assert list(validation.chunks(rows, size)) == bounds


@pytest.mark.parametrize(
    ("rows", "input_bytes", "size"),
    [
        (600, 600 * 784, 334),  # 28x28 uint8 images: a few hundred rows
        (10**6, 4 * 10**6, 65536),  # half_plus_two's 4-byte rows: up to CHUNK_BYTES
        (10, 10 * 10**6, 256),  # huge rows still run at least CHUNK_ROWS at a time
        (0, 0, 262144),
    ],
)
def test_chunk_rows_bounds_a_chunks_input_bytes(rows, input_bytes, size):
    assert validation.chunk_rows(rows, input_bytes) == size


def test_a_chunk_size_below_one_is_a_programming_error():
    with pytest.raises(ValueError, match="positive"):
        list(validation.chunks(5, 0))


@pytest.mark.parametrize(
    ("shape", "text"), [(None, "<unknown>"), ((), "[]"), ((-1, 28, 28), "[?,28,28]")]
)
def test_format_shape_prints_like_tf(shape, text):
    assert dtypes.format_shape(shape) == text
