"""Live model-config changes: gRPC ModelService.HandleReloadConfigRequest and
--model_config_file_poll_wait_seconds, against real `fmnist serve` processes."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

pytestmark = pytest.mark.integration


def config_text(fixtures: Path, models: dict[str, str], labels: str = "") -> str:
    """A model_config_list of TF Serving test models: name -> directory under `fixtures`."""
    entries = "".join(
        f'config {{ name: "{name}" base_path: "{fixtures / directory}" {labels} }} '
        for name, directory in models.items()
    )
    return f"model_config_list {{ {entries}}}"


def reload_request(text: str) -> model_management_pb2.ReloadConfigRequest:
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(text, request.config)
    return request


def predict(channel: grpc.Channel, model: str, label: str = "") -> float:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if label:
        request.model_spec.version_label = label
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.float32([1.0])))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return stub.Predict(request, timeout=30).outputs["y"].float_val[0]


@pytest.fixture
def started(model_server, serving_fixtures, tmp_path):
    """A server of `two` (half_plus_two) from a config file, and a gRPC channel to it."""
    path = tmp_path / "models.config"
    path.write_text(config_text(serving_fixtures, {"two": "saved_model_half_plus_two_cpu"}))

    def start(*flags: str):
        server = model_server("--model_config_file", str(path), *flags)
        return server, grpc.insecure_channel(server.grpc_target), path

    return start


def test_reload_adds_and_removes_models_while_staying_models_keep_serving(
    started, serving_fixtures
):
    _, channel, _ = started()
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    both = {"two": "saved_model_half_plus_two_cpu", "three": "saved_model_half_plus_three"}
    models.HandleReloadConfigRequest(
        reload_request(config_text(serving_fixtures, both)), timeout=120
    )
    assert predict(channel, "three") == 3.5
    failures, answered, done = [], [], threading.Event()

    def keep_asking() -> None:
        while not done.is_set() and len(answered) < 2000:
            try:
                answered.append(predict(channel, "three"))
            except grpc.RpcError as err:
                failures.append(err.code())

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        only_three = {"three": "saved_model_half_plus_three"}
        response = models.HandleReloadConfigRequest(
            reload_request(config_text(serving_fixtures, only_three)), timeout=120
        )
    finally:
        done.set()
        asker.join(60)
    assert response.status.error_code == 0
    assert failures == []
    assert answered and set(answered) == {3.5}
    with pytest.raises(grpc.RpcError) as caught:
        predict(channel, "two")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    channel.close()


def test_a_label_naming_no_available_version_fails_the_reload(started, serving_fixtures):
    _, channel, _ = started()
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    text = config_text(
        serving_fixtures,
        {"two": "saved_model_half_plus_two_cpu"},
        labels='version_labels { key: "stable" value: 999 }',
    )
    with pytest.raises(grpc.RpcError) as caught:
        models.HandleReloadConfigRequest(reload_request(text), timeout=120)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "version 999 of model two" in caught.value.details()
    assert predict(channel, "two") == 2.5  # the old config still serves
    channel.close()


def test_only_a_model_config_list_can_be_reloaded(started):
    _, channel, _ = started()
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        models.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Only ModelConfigList is currently supported" in caught.value.details()
    channel.close()


def test_config_file_polling_applies_edits(started, serving_fixtures):
    _, channel, path = started("--model_config_file_poll_wait_seconds", "0.2")
    text = config_text(
        serving_fixtures,
        {"two": "saved_model_half_plus_two_cpu", "three": "saved_model_half_plus_three"},
        labels='version_labels { key: "stable" value: 123 }',
    )
    staging = path.with_suffix(".tmp")
    staging.write_text(text)
    os.replace(staging, path)  # editors and config managers replace the file whole
    deadline = time.monotonic() + 120
    while True:
        try:
            assert predict(channel, "three", label="stable") == 3.5
            break
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert predict(channel, "two", label="stable") == 2.5
    channel.close()
