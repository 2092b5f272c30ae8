"""Which datasets train with horizontal flips (train.data.flip_makes_sense). No TensorFlow."""

from __future__ import annotations

import pytest

from fmnist.contract import FASHION_MNIST_CLASSES, MNIST_CLASSES
from fmnist.train.data import flip_makes_sense

CASES = [
    ("auto", FASHION_MNIST_CLASSES, True),
    ("auto", ("circle", "square", "ring"), True),
    ("auto", MNIST_CLASSES, False),
    ("auto", ("a", "b", "c"), False),  # letters: a mirrored b is a d
    ("auto", ("10", "11", "12"), False),
    ("on", MNIST_CLASSES, True),
    ("off", FASHION_MNIST_CLASSES, False),
]


@pytest.mark.parametrize(("setting", "names", "flips"), CASES)
def test_flips_only_where_a_mirror_image_is_the_same_class(setting, names, flips) -> None:
    assert flip_makes_sense(setting, tuple(names)) is flips
