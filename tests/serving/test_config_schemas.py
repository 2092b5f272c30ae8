"""The ModelServerConfig schema declared for TF-free installs matches TF Serving's official
message wherever it declares a field: same names, numbers, types and repetition."""

from __future__ import annotations

from tensorflow_serving.config import model_server_config_pb2

from fmnist.serving.server.config import declared_model_server_config


def _differences(ours, official, path: str) -> list[str]:
    found = []
    for field in ours.fields:
        theirs = official.fields_by_name.get(field.name)
        where = f"{path}.{field.name}"
        if theirs is None:
            found.append(f"{where}: not in the official message")
            continue
        for attribute in ("number", "type", "is_repeated"):
            if getattr(field, attribute) != getattr(theirs, attribute):
                found.append(f"{where}: {attribute} differs")
        if field.message_type is not None:
            found += _differences(field.message_type, theirs.message_type, where)
    return found


def test_declared_model_server_config_matches_the_official_one() -> None:
    ours = declared_model_server_config().DESCRIPTOR
    official = model_server_config_pb2.ModelServerConfig.DESCRIPTOR
    assert ours.full_name == official.full_name
    assert _differences(ours, official, ours.name) == []
