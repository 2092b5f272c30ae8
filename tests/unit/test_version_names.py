"""Version directory names as TF Serving's file-system source reads them, and the
base-path states a server tells apart (pure logic: no TensorFlow, no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fmnist.errors import UserError
from fmnist.export.publish import next_version, staged_version
from fmnist.layout import INT64_MAX, list_versions, parse_version, scan_versions


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("1", 1),
        ("00000123", 123),
        ("0", 0),
        ("9223372036854775807", INT64_MAX),
        ("0009223372036854775807", INT64_MAX),  # leading zeros do not count
        ("9223372036854775808", None),  # int64 max + 1
        ("99999999999999999999", None),
        ("9" * 5000, None),  # beyond int()'s digit limit: still just "not a version"
        ("-1", None),
        ("1.0", None),
        (".tmp-export-1-42", None),
        ("１２", None),  # full-width digits
        ("", None),
    ],
)
def test_parse_version(name: str, version: int | None):
    assert parse_version(name) == version


def test_scan_tells_missing_from_empty(tmp_path: Path):
    assert scan_versions(tmp_path / "absent") is None
    assert scan_versions(tmp_path) == {}
    (tmp_path / "file").write_text("")
    assert scan_versions(tmp_path / "file") is None
    assert list_versions(tmp_path / "absent") == {}


def test_scan_skips_names_beyond_int64(tmp_path: Path):
    for name in ("1", "99999999999999999999", "9223372036854775808", "2"):
        (tmp_path / name).mkdir()
    assert sorted(scan_versions(tmp_path)) == [1, 2]


def test_next_version_ignores_names_beyond_int64(tmp_path: Path):
    (tmp_path / "7").mkdir()
    (tmp_path / "99999999999999999999").mkdir()
    assert next_version(tmp_path) == 8


def test_next_version_after_int64_max_is_an_error(tmp_path: Path):
    (tmp_path / str(INT64_MAX)).mkdir()
    with pytest.raises(UserError, match="largest int64"):
        next_version(tmp_path)


@pytest.mark.parametrize("version", [0, INT64_MAX + 1])
def test_a_version_outside_int64_is_never_published(tmp_path: Path, version: int):
    with pytest.raises(UserError, match="int64"), staged_version(tmp_path / "m", version):
        pass
    assert not (tmp_path / "m").exists()
