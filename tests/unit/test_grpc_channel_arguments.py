"""TF Serving's --grpc_channel_arguments: comma-separated key=value, ints where they parse."""

from __future__ import annotations

import pytest

from fmnist.errors import UserError
from fmnist.serving.server.core.config import parse_grpc_channel_arguments


def test_ints_are_ints_and_other_values_stay_strings():
    parsed = parse_grpc_channel_arguments(
        "grpc.max_concurrent_streams=100,grpc.primary_user_agent=fmnist,grpc.x=-3"
    )
    assert parsed == (
        ("grpc.max_concurrent_streams", 100),
        ("grpc.primary_user_agent", "fmnist"),
        ("grpc.x", -3),
    )


def test_a_value_beyond_int32_stays_a_string():
    assert parse_grpc_channel_arguments("k=4294967296") == (("k", "4294967296"),)


def test_empty_pieces_are_skipped():
    assert parse_grpc_channel_arguments("") == ()
    assert parse_grpc_channel_arguments("a=1,,b=2,") == (("a", 1), ("b", 2))


@pytest.mark.parametrize("text", ["novalue", "=1", "a=1=2", "a=1,b"])
def test_bad_syntax_names_the_flag(text):
    with pytest.raises(UserError, match="--grpc_channel_arguments"):
        parse_grpc_channel_arguments(text)
