"""The input contract: round trip, one-line errors, the scaling rules (pure logic)."""

from __future__ import annotations

import numpy as np
import pytest

from fmnist.contract import FASHION_MNIST, ContractError, InputContract
from fmnist.preprocessing import scale_pixels

COLOUR = InputContract(32, 32, 3, ("circle", "square", "triangle", "star", "cross"))


@pytest.mark.parametrize("contract", [FASHION_MNIST, COLOUR, COLOUR.with_scaling("model")])
def test_contract_round_trips_through_its_dict(contract):
    assert InputContract.from_dict(contract.to_dict()) == contract


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"height": 0}, "height must be a whole number"),
        ({"width": 2.5}, "width must be a whole number"),
        ({"channels": 2}, "channels must be 1 (grayscale) or 3 (RGB)"),
        ({"scaling": "imagenet"}, "unknown pixel scaling 'imagenet'"),
        ({"dtype": "float32"}, "dtype must be uint8"),
        ({"class_names": ["only"]}, "at least 2 named classes"),
        ({"class_names": ["a", "a"]}, "class names repeat"),
        ({"class_names": "ab"}, "class_names must be a list"),
    ],
)
def test_impossible_contracts_are_refused_in_one_line(change, words):
    data = {**COLOUR.to_dict(), **change}
    with pytest.raises(ContractError, match=r"^where\.json: ") as caught:
        InputContract.from_dict(data, where="where.json")
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_field_is_named():
    data = COLOUR.to_dict()
    del data["channels"]
    with pytest.raises(ContractError, match="missing channels"):
        InputContract.from_dict(data)


@pytest.mark.parametrize(
    ("scaling", "low", "high"),
    [("unit", 0.0, 1.0), ("symmetric", -1.0, 1.0), ("raw", 0.0, 255.0), ("model", 0.0, 255.0)],
)
def test_scaling_maps_black_and_white_to_the_input_range(scaling, low, high):
    contract = COLOUR.with_scaling(scaling)
    pixels = np.array([0, 255], dtype=np.uint8).reshape(1, 1, 2, 1)
    assert contract.scale(pixels).ravel().tolist() == [low, high]
    assert contract.input_range() == (low, high)


def test_unit_scaling_is_the_old_rule_bit_for_bit():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    np.testing.assert_array_equal(FASHION_MNIST.scale(pixels), scale_pixels(pixels))


def test_images_of_another_shape_are_refused():
    with pytest.raises(
        ContractError, match=r"expected uint8 \[N, 32, 32, 3\], got uint8 \[1, 28, 28, 1\]"
    ):
        COLOUR.check_images(np.zeros((1, 28, 28, 1), np.uint8))
