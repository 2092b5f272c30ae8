"""ExportConfig holds the int8 options once, in Int8Options, and refuses bad values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fmnist.errors import UserError
from fmnist.export.config import ExportConfig, Int8Options


def test_export_config_holds_the_int8_options_instead_of_repeating_them() -> None:
    export_fields = {f.name for f in dataclasses.fields(ExportConfig)}
    int8_fields = {f.name for f in dataclasses.fields(Int8Options)}
    assert not export_fields & int8_fields
    options = Int8Options(equalize_alpha=0.25, bias_correction=False, flip_average=True)
    config = ExportConfig(Path("models"), int8=options)
    assert config.int8 is options
    assert not any(hasattr(config, name) for name in int8_fields)
    assert ExportConfig(Path("models")).int8 == Int8Options()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Int8Options(equalize_alpha=1.5), "--equalize-alpha must be between 0 and 1"),
        (lambda: ExportConfig(Path("m"), name="a/b"), "--name 'a/b': use letters"),
        (lambda: ExportConfig(Path("m"), version=0), "--version must be a positive integer"),
        (lambda: ExportConfig(Path("m"), label="1st"), "--label '1st': TF Serving labels"),
        (lambda: ExportConfig(Path("m"), calibration_size=0), "--calibration-size must be >= 1"),
        (lambda: ExportConfig(Path("m"), num_versions=0), "--num-versions must be >= 1"),
    ],
)
def test_bad_values_are_refused_naming_the_flag(make, message: str) -> None:
    with pytest.raises(UserError, match=message):
        make()
