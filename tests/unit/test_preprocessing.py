"""The float model's input rule on numpy arrays (the TensorFlow side: tests/train/test_model.py)."""

from __future__ import annotations

import numpy as np
import pytest

from fmnist.preprocessing import PIXEL_SCALE, preprocess, scale_pixels


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((3, 28, 28), (3, 28, 28, 1)), ((3, 28, 28, 1), (3, 28, 28, 1)), ((1, 1, 2), (1, 1, 2, 1))],
)
def test_preprocess_gives_float32_images_with_one_channel(
    shape: tuple[int, ...], expected: tuple[int, ...]
) -> None:
    out = preprocess(np.zeros(shape, np.uint8))
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == expected


def test_raw_pixels_scale_to_the_unit_range() -> None:
    pixels = np.array([[[0, 51, 255]]], dtype=np.uint8)
    assert preprocess(pixels).ravel().tolist() == [0.0, np.float32(0.2), 1.0]
    np.testing.assert_array_equal(scale_pixels(pixels), preprocess(pixels)[..., 0])
    assert PIXEL_SCALE == 255.0
