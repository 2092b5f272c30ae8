"""The version a pipeline published, judged against the previous one in its base path with
`fmnist compare`'s test-set thresholds (rollout.compare), for the report. Nothing is
recorded: blessing a version for promotion stays `fmnist compare`'s job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmnist.errors import UserError
from fmnist.layout import list_versions


def compare_with_previous(base_path: Path, name: str, version: int) -> dict[str, Any] | None:
    """{"previous", "passed", "text"} against the highest earlier version of `name`, or
    {"previous", "error"} when the two cannot be compared; None for a first version."""
    from fmnist.rollout.compare import compare_versions, load_bundle
    from fmnist.rollout.report import compare_text

    model_dir = base_path / name
    earlier = [v for v in list_versions(model_dir) if v < version]
    if not earlier:
        return None
    previous = max(earlier)
    try:
        comparison = compare_versions(
            load_bundle(model_dir, version),
            load_bundle(model_dir, previous),
            baseline_source=f"the previous version in {base_path}",
        )
    except UserError as err:  # a damaged bundle, another test set
        return {"previous": previous, "error": str(err)}
    return {"previous": previous, "passed": comparison.passed, "text": compare_text(comparison)}
