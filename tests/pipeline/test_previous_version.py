"""The pipeline report's comparison with the previous version in the base path, on real
exported bundles (`rollout_versions`: 1 the tiny model, 2 its degraded copy, 3 the tiny
model again)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fmnist.pipeline.previous import compare_with_previous
from fmnist.pipeline.report import previous_version_section, to_markdown

pytestmark = pytest.mark.integration


@pytest.fixture
def base(rollout_versions, tmp_path: Path) -> Path:
    return rollout_versions(tmp_path / "models", "all {}")


def test_a_first_version_has_nothing_to_compare(base: Path) -> None:
    assert compare_with_previous(base, "fashion_mnist", 1) is None


def test_a_worse_version_fails_against_the_previous_one(base: Path) -> None:
    previous = compare_with_previous(base, "fashion_mnist", 2)
    assert previous["previous"] == 1 and previous["passed"] is False
    assert "accuracy" in previous["text"] and "FAIL" in previous["text"]


def test_the_report_shows_the_comparison(base: Path) -> None:
    previous = compare_with_previous(base, "fashion_mnist", 3)
    assert previous["previous"] == 2
    section = previous_version_section(previous)
    markdown = to_markdown({"title": "t"}, [section])
    verdict = "passes" if previous["passed"] else "fails"
    assert "## Against version 2" in markdown and f"This version {verdict}" in markdown
    assert "version 3 against version 2" in markdown and "class_recall" in markdown


def test_a_damaged_previous_version_is_reported_not_raised(base: Path) -> None:
    (base / "fashion_mnist" / "2" / "manifest.json").write_text("{")
    previous = compare_with_previous(base, "fashion_mnist", 3)
    assert previous["previous"] == 2 and "manifest" in previous["error"]
