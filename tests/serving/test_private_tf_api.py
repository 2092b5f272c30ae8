"""The one private TensorFlow API the server uses still exists and still behaves as assumed
(see SavedModelServable._callable): a TF upgrade that drops or changes it fails here, loudly,
instead of as INTERNAL errors on every request."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2

from fmnist.serving.server.servables.saved_model import SavedModelServable


def test_session_make_callable_from_options_exists() -> None:
    assert callable(getattr(tf.compat.v1.Session, "_make_callable_from_options", None))


def test_callable_from_options_runs_feeds_positionally(serving_fixtures: Path) -> None:
    model = SavedModelServable(serving_fixtures / "saved_model_half_plus_two_cpu" / "00000123")
    try:
        options = config_pb2.CallableOptions(feed=["x:0"], fetch=["y:0"])
        run = model._session._make_callable_from_options(options)
        (y,) = run(np.array([[1.0], [4.0]], dtype=np.float32))
        np.testing.assert_array_equal(y, [[2.5], [4.0]])
    finally:
        model.close()
