"""A request log as replay reads it: the logged calls of one model, each with its request,
its response and the version that answered, streamed one record at a time.

Records that cannot be replayed are counted with the reading damage (`LogReadStats`), never
raised: requests for another model, kinds no model server answers (session_run_log,
predict_streamed_log, or no kind at all) and records without a logged answer.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmnist.errors import UserError
from fmnist.serving.wire.prediction_log import LogReadStats, log_files, read_prediction_logs

# The gRPC method that answers each replayable kind.
METHOD_OF_LOG_TYPE = {
    "predict_log": "Predict",
    "classify_log": "Classify",
    "regress_log": "Regress",
    "multi_inference_log": "MultiInference",
}

# Why a record was not replayed (added to `LogReadStats.skipped`).
OTHER_MODEL = "other_model"
UNSUPPORTED_METHOD = "unsupported_method"
NO_LOGGED_ANSWER = "no_logged_answer"


@dataclass(frozen=True)
class LoggedCall:
    """One logged request and its answer."""

    where: str  # FILE#INDEX
    method: str  # Predict, Classify, Regress or MultiInference
    request: Any
    response: Any
    version: int | None  # the version that answered, if the log says
    timestamp_secs: int


class RequestLog:
    """The calls of one model in LOGS (files, directories, globs or filename prefixes).

    `model_name` None takes the model of the first replayable record; records of other
    models are counted by name in `other_models`. Iterating streams the files again."""

    def __init__(
        self,
        specs: Sequence[str | os.PathLike],
        model_name: str | None = None,
        **read_options: Any,
    ) -> None:
        self.files: list[Path] = [path for spec in specs for path in log_files(spec)]
        self.model_name = model_name
        self.model_name_given = model_name is not None
        self.stats = LogReadStats()
        self.other_models: Counter[str] = Counter()
        self.logged_versions: Counter[int | None] = Counter()
        self._read_options = read_options

    def __iter__(self) -> Iterator[LoggedCall]:
        self.stats = LogReadStats()
        self.other_models.clear()
        self.logged_versions.clear()
        for where, entry in read_prediction_logs(self.files, self.stats, **self._read_options):
            call = self._call(where, entry)
            if call is not None:
                self.logged_versions[call.version] += 1
                yield call

    def resolve_model_name(self) -> str:
        """The model replayed: the one given, else the first replayable record's."""
        if self.model_name is None:
            for _ in self:
                break
        if self.model_name is None:
            raise UserError(self.nothing_to_replay())
        return self.model_name

    def nothing_to_replay(self) -> str:
        """Why the logs gave nothing to replay, in one line."""
        stats = self.stats
        skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(stats.skipped.items()))
        others = ", ".join(sorted(self.other_models))
        return (
            f"nothing to replay in {stats.files} file{'s' * (stats.files != 1)}: "
            f"{stats.records} records read"
            + (f"; skipped: {skipped}" if skipped else "")
            + (f" (models in the logs: {others})" if others else "")
            + (f"; {stats.notes[0]}" if stats.notes else "")
        )

    def _call(self, where: str, entry: Any) -> LoggedCall | None:
        log_type = entry.WhichOneof("log_type")
        if log_type not in METHOD_OF_LOG_TYPE:
            self.stats.skip(
                UNSUPPORTED_METHOD, f"{where}: {log_type or 'no request'} is not replayed"
            )
            return None
        logged = getattr(entry, log_type)
        name = _model_name(log_type, logged.request)
        if self.model_name is None:
            self.model_name = name
        if name != self.model_name:
            self.other_models[name] += 1
            first = self.other_models[name] == 1
            note = f"{where}: model {name!r} is not replayed (replaying {self.model_name!r})"
            self.stats.skip(OTHER_MODEL, note if first else None)
            return None
        if not logged.HasField("response"):
            self.stats.skip(NO_LOGGED_ANSWER, f"{where}: the record has no response to compare")
            return None
        return LoggedCall(
            where=where,
            method=METHOD_OF_LOG_TYPE[log_type],
            request=logged.request,
            response=logged.response,
            version=_answered_version(entry, log_type, logged.response),
            timestamp_secs=int(entry.log_metadata.timestamp_secs),
        )


def _model_name(log_type: str, request: Any) -> str:
    if log_type == "multi_inference_log":
        return request.tasks[0].model_spec.name if request.tasks else ""
    return request.model_spec.name


def _answered_version(entry: Any, log_type: str, response: Any) -> int | None:
    """The log metadata's version, else the response's (TF Serving fills both)."""
    specs = [entry.log_metadata.model_spec]
    if log_type == "multi_inference_log":
        specs += [result.model_spec for result in response.results]
    else:
        specs.append(response.model_spec)
    for spec in specs:
        if spec.HasField("version"):
            return int(spec.version.value)
    return None
