"""Activation-range equalization: the float function stays, the channel ranges even out."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fmnist.export.equalize import equalize_activations
from fmnist.preprocessing import preprocess
from fmnist.train.config import TrainConfig
from fmnist.train.model import build_model

RELUS = ("block1_relu1", "block2_relu1", "block2_relu2", "dense_relu")
SMALL = {"width": 8, "depth": 2, "dense_units": 16}


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8)


def _channel_maxima(model: keras.Model, images: np.ndarray) -> list[np.ndarray]:
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in RELUS])
    outputs = probe.predict(preprocess(images), verbose=0)
    return [out.reshape(-1, out.shape[-1]).max(axis=0) for out in outputs]


@pytest.mark.parametrize("batch_norm", [True, False])
def test_the_equalized_model_gives_the_same_probabilities(
    batch_norm: bool, images: np.ndarray
) -> None:
    model = build_model(TrainConfig(batch_norm=batch_norm, **SMALL))
    equalized = equalize_activations(model, images, alpha=1.0)
    assert equalized is not model
    np.testing.assert_allclose(
        equalized.predict(preprocess(images), verbose=0),
        model.predict(preprocess(images), verbose=0),
        atol=1e-5,
    )


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_each_channel_range_moves_toward_the_largest_by_alpha(
    alpha: float, images: np.ndarray
) -> None:
    """Channel maximum m becomes M**alpha * m**(1 - alpha): alpha 1 raises every channel to
    the largest maximum M, 0.5 to the geometric mean of the two."""
    model = build_model(TrainConfig(**SMALL))
    before = _channel_maxima(model, images)
    after = _channel_maxima(equalize_activations(model, images, alpha=alpha), images)
    for old, new in zip(before, after, strict=True):
        live = old > 1e-6 * old.max()
        assert old[live].min() < 0.7 * old.max()  # uneven to begin with
        expected = old.max() ** alpha * old[live] ** (1 - alpha)
        np.testing.assert_allclose(new[live], expected, rtol=1e-4)


@pytest.mark.parametrize("model", ["residual_model", "bounded_relu_model"])
def test_models_it_cannot_rescale_exactly_are_returned_as_they_are(
    model: str, images: np.ndarray, request: pytest.FixtureRequest
) -> None:
    # A residual Add mixes two paths' channels; a bounded ReLU does not commute with scaling.
    built = request.getfixturevalue(model)
    assert equalize_activations(built, images, alpha=0.75) is built


def test_alpha_zero_changes_nothing(images: np.ndarray) -> None:
    model = build_model(TrainConfig(**SMALL))
    assert equalize_activations(model, images, alpha=0.0) is model


def test_an_alpha_outside_zero_to_one_is_refused(images: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        equalize_activations(build_model(TrainConfig(**SMALL)), images, alpha=1.5)
