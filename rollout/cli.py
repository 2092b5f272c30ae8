"""`fmnist replay`, `fmnist compare` and `fmnist promote`: parse, call the rollout library,
report. None of them needs TensorFlow."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from fmnist.cli import check_output_file
from fmnist.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands to the `fmnist` parser."""
    _register_replay(subparsers)
    _register_compare(subparsers)
    _register_promote(subparsers)


# --- shared flags ---------------------------------------------------------------------------


def _endpoint_args(parser: argparse.ArgumentParser, *, required: bool) -> None:
    where = parser.add_mutually_exclusive_group(required=required)
    where.add_argument("--grpc", metavar="HOST:PORT", help="TF Serving gRPC endpoint")
    where.add_argument(
        "--rest", metavar="URL", help="TF Serving REST endpoint, e.g. localhost:8501"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="deadline per call (30)"
    )


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "base_path", type=Path, metavar="BASE", help="TF Serving base path (has models.config)"
    )
    parser.add_argument(
        "--name", default="fashion_mnist", help="model name (default fashion_mnist)"
    )


def _output_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the result as JSON")
    parser.add_argument(
        "--markdown", type=Path, metavar="OUT", help="also write the result as Markdown"
    )


def _replay_args(parser: argparse.ArgumentParser) -> None:
    """How logged requests are sent and read (replay, and compare given --logs)."""
    arg = parser.add_argument
    arg(
        "--output",
        metavar="NAME",
        help="the Predict output holding class scores (default: "
        "probabilities, else scores, else the only numeric output)",
    )
    arg(
        "--batch-size",
        type=int,
        default=256,
        metavar="B",
        help="logged Predict examples sent together per call (256; 1: each request alone)",
    )
    arg(
        "--latency-samples",
        type=int,
        default=200,
        metavar="N",
        help="requests timed one by one against the target and the logged version (200; 0: none)",
    )
    arg(
        "--value-tolerance",
        type=float,
        default=1e-3,
        metavar="REL",
        help="values (Regress, one-number outputs) agree within this relative difference (1e-3)",
    )


def _check_replay_args(args: argparse.Namespace) -> None:
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UserError(f"--timeout must be a finite number of seconds > 0, got {args.timeout}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.latency_samples < 0:
        raise UserError(f"--latency-samples must be >= 0, got {args.latency_samples}")
    if not (math.isfinite(args.value_tolerance) and args.value_tolerance >= 0):
        raise UserError(f"--value-tolerance must be >= 0, got {args.value_tolerance}")


def _check_outputs(args: argparse.Namespace) -> None:
    for flag in ("json", "markdown"):
        if getattr(args, flag):
            check_output_file(getattr(args, flag), f"--{flag}")


def _client(args: argparse.Namespace, model_name: str):
    from fmnist.serving.client import GrpcClient, RestClient

    if args.grpc:
        return GrpcClient(args.grpc, model_name, timeout=args.timeout)
    return RestClient(args.rest, model_name, timeout=args.timeout)


def _write(args: argparse.Namespace, data: dict[str, Any], markdown: str) -> None:
    if args.json:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    if args.markdown:
        args.markdown.write_text(markdown)
        print(f"wrote {args.markdown}", file=sys.stderr)


# --- fmnist replay --------------------------------------------------------------------------


def _register_replay(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="send logged requests to a TF Serving endpoint and compare with the logged answers",
        description="Read TF Serving request logs (TFRecord files of PredictionLog: files, "
        "directories, globs or filename prefixes), send each logged request to the endpoint "
        "and compare its answer with the logged one: top-1 agreement overall and per logged "
        "class, the largest score difference, errors, and latency side by side with the "
        "version that answered in the log. Exit 0 within tolerance, 1 outside it, 2 when it "
        "could not check.",
    )
    parser.add_argument("logs", nargs="+", type=Path, metavar="LOGS")
    _endpoint_args(parser, required=True)
    parser.add_argument(
        "--model-name", metavar="NAME", help="model to replay (default: the first logged one)"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, metavar="N", help="send to this version")
    which.add_argument("--label", metavar="L", help="send to the version this label names")
    parser.add_argument(
        "--bundle",
        type=Path,
        metavar="PATH",
        help="a bundle or model directory: its manifest names the classes and dequantizes "
        "int8 scores",
    )
    tol = parser.add_argument
    tol(
        "--min-agreement",
        type=float,
        default=0.99,
        metavar="F",
        help="required agreement with the logged answers (0.99)",
    )
    tol(
        "--min-class-agreement",
        type=float,
        default=0.95,
        metavar="F",
        help="required agreement on the answers of each logged class (0.95)",
    )
    tol(
        "--min-class-support",
        type=int,
        default=30,
        metavar="N",
        help="classes with fewer logged answers are shown, not judged (30)",
    )
    tol("--max-errors", type=int, default=0, metavar="N", help="failed requests allowed (0)")
    tol(
        "--max-score-diff",
        type=float,
        metavar="D",
        help="largest change of any class score allowed (default: not judged)",
    )
    _replay_args(parser)
    _output_args(parser)
    parser.set_defaults(handler=_replay, precheck=_check_replay)


def _tolerance(args: argparse.Namespace):
    from fmnist.rollout.replay import ReplayTolerance

    return ReplayTolerance(
        min_agreement=args.min_agreement,
        min_class_agreement=args.min_class_agreement,
        min_class_support=args.min_class_support,
        max_errors=args.max_errors,
        max_score_diff=args.max_score_diff,
    )


def _check_replay(args: argparse.Namespace) -> None:
    _check_replay_args(args)
    _check_outputs(args)
    _tolerance(args)


def _replay(args: argparse.Namespace) -> int:
    from fmnist.rollout.logs import RequestLog
    from fmnist.rollout.replay import Target, replay
    from fmnist.rollout.report import replay_markdown, replay_text

    log = RequestLog(args.logs, args.model_name)
    model_name = log.resolve_model_name()
    class_names, quantization = _bundle_facts(args.bundle)
    with _client(args, model_name) as client:
        result = replay(
            log,
            _endpoint(client, model_name, args, quantization),
            Target(version=args.version, label=args.label),
            tolerance=_tolerance(args),
            options=_options(args),
            class_names=class_names,
        )
    print(replay_text(result))
    _write(args, result.to_dict(), replay_markdown(result))
    return result.exit_code


def _endpoint(client, model_name: str, args: argparse.Namespace, quantization):
    from fmnist.rollout.endpoint import Endpoint

    return Endpoint(client, model_name, output=args.output, quantization=quantization)


def _options(args: argparse.Namespace):
    from fmnist.rollout.replay import ReplayOptions

    return ReplayOptions(
        batch_rows=args.batch_size,
        latency_samples=args.latency_samples,
        value_rtol=args.value_tolerance,
    )


def _bundle_facts(path: Path | None) -> tuple[list[str] | None, tuple[float, int] | None]:
    """Class names and the int8 output quantization of a bundle (or a model directory's
    latest bundle)."""
    if path is None:
        return None, None
    from fmnist.layout import list_versions
    from fmnist.manifest import MANIFEST_NAME, load_manifest

    if not (path / MANIFEST_NAME).is_file() and path.is_dir() and list_versions(path):
        path = list_versions(path)[max(list_versions(path))]
    manifest = load_manifest(path)
    output = manifest.tflite("int8").output if "int8" in manifest.tflite_kinds else None
    quantization = (output.scale, output.zero_point) if output and output.scale else None
    return manifest.class_names, quantization


# --- fmnist compare -------------------------------------------------------------------------


def _register_compare(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="judge a candidate version against the one a label names; record the verdict",
        description="Compare version CANDIDATE of model NAME under BASE with a baseline (the "
        "version --label names in BASE/models.config, or --baseline) on the test set, from "
        "the bundles' manifests and reference outputs, and, given --logs, on replayed "
        "traffic; judge it by value and change thresholds (TFX's terms) and write the "
        "verdict to BASE/NAME/CANDIDATE/blessing.json, which fmnist promote reads. A first "
        "version, with no baseline, is judged on absolute limits alone. Exit 0 when it "
        "passes, 1 when it does not, 2 when it could not judge.",
    )
    arg = parser.add_argument
    _model_args(parser)
    arg("--candidate", type=int, metavar="V", help="version to judge (default: the latest)")
    base = parser.add_mutually_exclusive_group()
    base.add_argument(
        "--label",
        default="stable",
        metavar="L",
        help="the baseline is the version this label names (default stable)",
    )
    base.add_argument("--baseline", type=int, metavar="V", help="compare with this version")
    arg(
        "--thresholds",
        type=Path,
        metavar="FILE",
        help="thresholds file (JSON, or TOML by its suffix): metric -> value/change thresholds",
    )
    arg("--min-accuracy", type=float, metavar="F", help="accuracy value lower bound (none)")
    arg(
        "--max-accuracy-drop",
        type=float,
        metavar="PP",
        help="accuracy change allowed below the baseline's, percentage points (0.5)",
    )
    arg(
        "--max-class-recall-drop",
        type=float,
        metavar="PP",
        help="recall change allowed for any class, percentage points (3.0)",
    )
    arg(
        "--min-agreement",
        type=float,
        metavar="F",
        help="test-set top-1 agreement of the two versions, lower bound (none)",
    )
    traffic = parser.add_argument_group("replayed traffic")
    traffic.add_argument(
        "--logs",
        nargs="+",
        type=Path,
        metavar="LOGS",
        help="request logs to replay against the candidate (needs --grpc or "
        "--rest, where the candidate is served)",
    )
    _endpoint_args(traffic, required=False)
    traffic.add_argument(
        "--min-traffic-agreement",
        type=float,
        metavar="F",
        help="replayed answers agreeing with the logged ones, lower bound (0.9)",
    )
    traffic.add_argument(
        "--max-traffic-errors", type=int, metavar="N", help="failed replayed requests allowed (0)"
    )
    traffic.add_argument(
        "--max-latency-increase",
        type=float,
        metavar="REL",
        help="p99 latency change against the baseline, relative, e.g. 0.5 (none)",
    )
    _replay_args(traffic)
    arg("--dry-run", action="store_true", help="judge and report; write no blessing")
    _output_args(parser)
    parser.set_defaults(handler=_compare, precheck=_check_compare)


def _check_compare(args: argparse.Namespace) -> None:
    _check_outputs(args)
    if args.logs and not (args.grpc or args.rest):
        raise UserError("--logs needs --grpc or --rest: where the candidate is served")
    if (args.grpc or args.rest) and not args.logs:
        raise UserError("--grpc/--rest serve replayed traffic: give --logs too")
    if args.logs:
        _check_replay_args(args)
    _thresholds(args)


def _thresholds(args: argparse.Namespace):
    """The defaults, then the file's metrics, then the flags."""
    from fmnist.rollout.thresholds import DEFAULT_THRESHOLDS, load_thresholds, with_limits

    thresholds = dict(DEFAULT_THRESHOLDS)
    if args.thresholds:
        thresholds.update(load_thresholds(args.thresholds))
    return with_limits(
        thresholds,
        min_accuracy=args.min_accuracy,
        max_accuracy_drop_pp=args.max_accuracy_drop,
        max_class_recall_drop_pp=args.max_class_recall_drop,
        min_agreement=args.min_agreement,
        min_traffic_agreement=args.min_traffic_agreement,
        max_traffic_errors=args.max_traffic_errors,
        max_latency_increase=args.max_latency_increase,
    )


def _compare(args: argparse.Namespace) -> int:
    from fmnist.layout import latest_version
    from fmnist.rollout.blessing import record_comparison
    from fmnist.rollout.compare import compare_versions, load_bundle, resolve_baseline
    from fmnist.rollout.report import compare_markdown, compare_text

    model_dir = args.base_path / args.name
    candidate_version = args.candidate or latest_version(model_dir)
    if candidate_version is None:
        raise UserError(f"{model_dir}: no versions to compare")
    if args.baseline is not None:
        baseline_version, source = args.baseline, f"--baseline {args.baseline}"
    else:
        baseline_version, source = resolve_baseline(args.base_path, args.name, args.label)
    if baseline_version == candidate_version:
        raise UserError(
            f"version {candidate_version} is the baseline itself ({source}): nothing to compare"
        )
    candidate = load_bundle(model_dir, candidate_version)
    baseline = load_bundle(model_dir, baseline_version) if baseline_version is not None else None
    traffic = _replay_for_compare(args, candidate, baseline) if args.logs else None
    comparison = compare_versions(
        candidate,
        baseline,
        thresholds=_thresholds(args),
        baseline_source=source,
        traffic=traffic,
        base_path=args.base_path,
    )
    print(compare_text(comparison))
    _write(args, comparison.to_dict(), compare_markdown(comparison))
    if not args.dry_run:
        blessing = record_comparison(
            candidate.directory,
            model_name=args.name,
            model_version=candidate.version,
            manifest_sha256=candidate.manifest_sha256,
            blessed=comparison.passed,
            baseline=None
            if baseline is None
            else {"version": baseline.version, "manifest_sha256": baseline.manifest_sha256},
            comparison=comparison.to_dict(),
        )
        print(f"recorded the verdict in {blessing.path}", file=sys.stderr)
    return comparison.exit_code


def _replay_for_compare(args: argparse.Namespace, candidate, baseline):
    from fmnist.rollout.logs import RequestLog
    from fmnist.rollout.replay import ReplayTolerance, Target, replay

    output = candidate.manifest.tflite("int8").output
    quantization = (output.scale, output.zero_point) if output.scale else None
    log = RequestLog(args.logs, args.name)
    with _client(args, args.name) as client:
        return replay(
            log,
            _endpoint(client, args.name, args, quantization),
            Target(version=candidate.version),
            tolerance=ReplayTolerance(min_agreement=0, min_class_agreement=0, max_errors=2**31),
            options=_options(args),
            class_names=candidate.manifest.class_names,
            reference=Target(version=baseline.version) if baseline is not None else None,
        )


# --- fmnist promote -------------------------------------------------------------------------


def _register_promote(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "promote",
        help="point a version label in models.config at a blessed version, or roll it back",
        description="Point label L of model NAME in BASE/models.config at VERSION, atomically "
        "(under a lock: a second promote waits, then fails), when VERSION's blessing.json "
        "(written by fmnist compare) passed against the version L names now, or when the "
        "move undoes L's last one (a rollback). --force overrides the verdict, and says so. "
        "A running server picks the change up through --model_config_file_poll_wait_seconds. "
        "Exit 0 when moved (or already there), 1 when VERSION failed its comparison, 2 when "
        "nothing vouches for it or it cannot be promoted.",
    )
    arg = parser.add_argument
    _model_args(parser)
    arg("--label", required=True, metavar="L", help="the version label to move, e.g. stable")
    arg("--to", type=int, required=True, metavar="VERSION", help="the version L will name")
    arg(
        "--force",
        action="store_true",
        help="move even if VERSION's blessing does not allow it (stated in the output and "
        "recorded in its blessing.json)",
    )
    arg(
        "--lock-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="wait this long for another promote or export to finish (30)",
    )
    server = parser.add_argument_group("confirm with the running server (optional)")
    _endpoint_args(server, required=False)
    server.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="S",
        help="with --grpc/--rest: wait until the label answers from VERSION (60)",
    )
    _output_args(parser)
    parser.set_defaults(handler=_promote, precheck=_check_promote)


def _check_promote(args: argparse.Namespace) -> None:
    _check_outputs(args)
    for flag, number in (("--lock-timeout", args.lock_timeout), ("--wait", args.wait)):
        if not (math.isfinite(number) and number >= 0):
            raise UserError(f"{flag} must be a finite number of seconds >= 0, got {number}")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UserError(f"--timeout must be a finite number of seconds > 0, got {args.timeout}")


def _promote(args: argparse.Namespace) -> int:
    from fmnist.rollout.promote import promote

    done = promote(
        args.base_path,
        args.name,
        args.label,
        args.to,
        force=args.force,
        lock_timeout=args.lock_timeout,
        wait_until_loaded=_loaded_waiter(args) if args.grpc or args.rest else None,
    )
    was = f"version {done.previous}" if done.previous is not None else "no version"
    if not done.changed:
        print(f"{args.label} already names {args.name} version {done.version}; nothing changed")
    else:
        print(f"{args.label}: {args.name} {was} -> version {done.version}")
        if done.forced:
            print(f"FORCED (--force): {done.forced_over}")
        else:
            print(f"allowed: {done.allowed_by}")
        policy = "changed to " if done.policy_changed else ""
        print(f"updated {done.config} (version policy {policy}{done.policy})")
    data = done.to_dict()
    code = 0
    if args.grpc or args.rest:
        seconds = _wait_for_label(args, done.version)
        data["server_seconds"] = seconds
        if seconds is None:
            print(
                f"fmnist promote: error: the server still does not answer {args.label} from "
                f"version {done.version} after {args.wait:g} s (is it polling "
                "--model_config_file with --model_config_file_poll_wait_seconds?)",
                file=sys.stderr,
            )
            code = 2
        else:
            print(f"server: {args.label} answers from version {done.version} ({seconds:.1f} s)")
    _write(args, data, _promotion_markdown(data))
    return code


def _loaded_waiter(args: argparse.Namespace):
    """Waits until the server has the given versions AVAILABLE (promote's first step)."""
    from fmnist.rollout.promote import wait_until_loaded

    def wait(versions: set[int]) -> None:
        print(f"waiting for the server to load version {', '.join(map(str, sorted(versions)))}")
        with _client(args, args.name) as client:
            wait_until_loaded(client, versions, args.wait, args.label)

    return wait


def _wait_for_label(args: argparse.Namespace, version: int) -> float | None:
    from fmnist.rollout.promote import wait_for_label

    with _client(args, args.name) as client:
        return wait_for_label(client, args.label, version, args.wait)


def _promotion_markdown(data: dict[str, Any]) -> str:
    from fmnist.rollout.report import markdown_table

    rows = [[key, str(value)] for key, value in data.items()]
    return f"## Promotion: {data['label']} -> version {data['version']}\n\n" + (
        markdown_table(["", ""], rows) + "\n"
    )
