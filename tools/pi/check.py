#!/usr/bin/env python3
"""Prove the README's Raspberry Pi install on emulated Raspberry Pi OS userlands (arm64, armhf).

For each userland: a cached Debian bookworm root filesystem (what Raspberry Pi OS is built
on) under qemu user-mode with a pinned Pi CPU; the README's install (`pip install
"<wheel>[edge]"` in a venv); `fmnist-edge classify` on real test images, `parity` on the
bundle's test set and `bench`; then `fmnist serve --prefer_tflite_model` in the userland
(no TensorFlow) answering gRPC and REST predicts exactly as the edge runner
(serve_probe.py). One summary line per userland; exit 0 when all pass, 1 on drift, 2 when
something could not be checked. Needs root (chroot, mounts, binfmt_misc) and
Debian's qemu-user-static and mmdebstrap. Standard library only.

    sudo python3 tools/pi/check.py --bundle B --data-dir D --wheel W [--userland all]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pi_emulation import (
    USERLANDS,
    Binfmt,
    CheckError,
    Chroot,
    Userland,
    ensure_rootfs,
    host_mirror,
    log,
)
from pi_testset import Sample, data_files, write_samples

EXIT_OK, EXIT_DRIFT, EXIT_UNCHECKED = 0, 1, 2
DEFAULT_CACHE = "/var/cache/fmnist-pi"
INSIDE = "/root/fmnist"  # where the wheel, bundle and data go, as in the README's scp line


@dataclass
class Outcome:
    """What one userland's check found; `code` is 0, 1 or 2."""

    userland: Userland
    code: int = EXIT_UNCHECKED
    runtime: str = "?"
    numpy: str = "?"
    install_s: float | None = None
    classify: str = "?"
    agreement: float | None = None
    parity_s: float | None = None
    images_per_s: float | None = None
    p50_ms: float | None = None
    serve_ready_s: float | None = None
    serve_p50_ms: float | None = None
    serve_grpc_p50_ms: float | None = None
    total_s: float = 0.0
    problem: str = ""

    def line(self) -> str:
        status = {EXIT_OK: "PASS", EXIT_DRIFT: "DRIFT"}.get(self.code, "UNCHECKED")

        def num(value: float | None, fmt: str) -> str:
            return "?" if value is None else format(value, fmt)

        text = (
            f"{self.userland.name} ({self.userland.cpu}): {status}"
            f" | runtime {self.runtime}, numpy {self.numpy}"
            f" | classify {self.classify}"
            f" | agreement {num(self.agreement and self.agreement * 100, '.2f')}%"
            f" | parity {num(self.parity_s, '.1f')} s"
            f" | bench {num(self.images_per_s, ',.0f')} images/s, p50 {num(self.p50_ms, '.2f')} ms"
            f" | serve ready {num(self.serve_ready_s, '.1f')} s,"
            f" REST p50 {num(self.serve_p50_ms, '.1f')} ms,"
            f" gRPC p50 {num(self.serve_grpc_p50_ms, '.1f')} ms"
            f" | install {num(self.install_s, '.0f')} s | total {self.total_s:.0f} s"
        )
        return f"{text} | {self.problem}" if self.problem else text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/pi/check.py",
        description="Run the edge runner on emulated Raspberry Pi OS userlands (needs root).",
        allow_abbrev=False,
    )
    parser.add_argument("--bundle", type=Path, required=True, help="an exported bundle")
    parser.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="the bundle's dataset: a directory with its t10k-* IDX files, or an .npz",
    )
    parser.add_argument("--wheel", type=Path, required=True, help="fmnist-deploy wheel")
    parser.add_argument("--userland", choices=(*USERLANDS, "all"), default="all")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("FMNIST_PI_CACHE", DEFAULT_CACHE)),
        help=f"root filesystems and pip's cache (default $FMNIST_PI_CACHE or {DEFAULT_CACHE})",
    )
    parser.add_argument("--mirror", help="Debian mirror (default: the host's apt mirror)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the root filesystems")
    parser.add_argument("--bench-runs", type=int, default=200, metavar="R")
    return parser.parse_args(argv)


def bundle_files(bundle: Path) -> list[str]:
    """What the README says the Pi needs of a bundle, named as its manifest names them."""
    manifest_path = bundle / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        files = [
            manifest["tflite"]["int8"]["file"],
            manifest["tflite"]["float32"]["file"],
            manifest["reference"]["file"],
        ]
        # model.tflite: what `fmnist serve --prefer_tflite_model` (and TF Serving) serve.
        files += [manifest["tflite"]["int8"]["serving_file"]] * (
            "serving_file" in manifest["tflite"]["int8"]
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckError(f"{manifest_path}: not a readable bundle manifest ({err})") from None
    return ["manifest.json", *files]


def check_inputs(args: argparse.Namespace) -> list[str]:
    if os.geteuid() != 0:
        raise CheckError("needs root (chroot, mounts, binfmt_misc): run it with sudo")
    for tool, package in (("mmdebstrap", "mmdebstrap"), ("chroot", "coreutils")):
        if shutil.which(tool) is None:
            raise CheckError(f"{tool} not found: apt-get install {package}")
    if not args.wheel.is_file() or args.wheel.suffix != ".whl":
        raise CheckError(f"--wheel {args.wheel}: no such wheel file")
    try:
        args.data_files = data_files(args.data_dir)
    except (OSError, ValueError) as err:
        raise CheckError(f"--data-dir {err}") from None
    files = bundle_files(args.bundle)
    for name in files:
        if not (args.bundle / name).is_file():
            raise CheckError(f"--bundle {args.bundle}: {name} not found")
    if args.bench_runs < 1:
        raise CheckError(f"--bench-runs must be >= 1, got {args.bench_runs}")
    return files


def stage_inputs(chroot: Chroot, args: argparse.Namespace, files: list[str], samples: Path) -> None:
    """Copy only what the README ships to a Pi: the wheel, the bundle's files, the test data."""
    inside = chroot.path(INSIDE)
    (inside / "1").mkdir(parents=True)
    (inside / "data").mkdir()
    shutil.copy2(args.wheel, inside / args.wheel.name)
    for name in files:
        shutil.copy2(args.bundle / name, inside / "1" / name)
    for path in args.data_files:
        shutil.copy2(path, inside / "data" / path.name)
    shutil.copytree(samples, inside / "images")
    shutil.copy2(Path(__file__).resolve().parent / "serve_probe.py", inside / "serve_probe.py")


def inside_data(args: argparse.Namespace) -> str:
    """`--data-dir` inside the userland: the staged .npz, or the folder of IDX test files."""
    (first,) = args.data_files[:1]
    return f"{INSIDE}/data/{first.name}" if first.suffix == ".npz" else f"{INSIDE}/data"


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def check_classify(outcome: Outcome, chroot: Chroot, samples: list[Sample]) -> bool:
    """Each PNG and the same images as .npy, twice: the true class, identical answers."""
    pngs = " ".join(f"{INSIDE}/images/test{s.index:05d}.png" for s in samples)
    cmd = f"fmnist-edge classify {INSIDE}/1 {pngs} {INSIDE}/images/samples.npy --json"
    runs = [chroot.run(f"{INSIDE}/venv/bin/{cmd}") for _ in range(2)]
    for result in runs:
        if result.code != 0:
            raise CheckError(f"classify exited {result.code}: {_tail(result.stderr)}")
    for line in runs[0].stderr.splitlines():
        if line.startswith("runtime: "):
            outcome.runtime = line.removeprefix("runtime: ").strip()
    answers = [json.loads(result.stdout) for result in runs]
    n = len(samples)
    top = [[item["predictions"][0]["class_id"] for item in answer] for answer in answers]
    right = sum(top[0][i] == s.label for i, s in enumerate(samples))
    same_as_npy = top[0][:n] == top[0][n:]
    deterministic = answers[0] == answers[1]
    outcome.classify = f"{right}/{n}"
    if right == n and same_as_npy and deterministic:
        return True
    problems = []
    if right != n:
        problems.append(f"classify got {right}/{n} confident test images right")
    if not same_as_npy:
        problems.append("PNG and .npy answers differ")
    if not deterministic:
        problems.append("two identical classify runs gave different answers")
    outcome.problem = "; ".join(problems)
    return False


def check_serving(outcome: Outcome, chroot: Chroot, files: list[str]) -> bool:
    """`fmnist serve --prefer_tflite_model` inside the userland: gRPC and REST answers equal
    the edge runner's, with no TensorFlow loaded (skipped for bundles without model.tflite)."""
    if "model.tflite" not in files:
        log(f"== {outcome.userland.name}: bundle has no model.tflite, serving not checked")
        return True
    log(f"== {outcome.userland.name}: fmnist serve --prefer_tflite_model vs the edge runner")
    probe = chroot.run(
        f"{INSIDE}/venv/bin/python {INSIDE}/serve_probe.py {INSIDE} {INSIDE}/images/samples.npy"
    )
    if probe.code not in (EXIT_OK, EXIT_DRIFT) or not probe.stdout.strip():
        raise CheckError(f"serving probe exited {probe.code}: {_tail(probe.stderr)}")
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    outcome.serve_ready_s, outcome.serve_p50_ms = result["ready_s"], result["p50_ms"]
    outcome.serve_grpc_p50_ms = result["grpc_p50_ms"]
    if probe.code == EXIT_OK:
        return True
    problems = [
        "REST answers differ from fmnist-edge's" * (not result["equal"]),
        "gRPC answers differ from fmnist-edge's" * (not result["grpc_equal"]),
        "TensorFlow was loaded by the server" * result["tensorflow_loaded"],
    ]
    outcome.problem = "; ".join(filter(None, [outcome.problem, *problems]))
    return False


def check_userland(
    userland: Userland,
    args: argparse.Namespace,
    files: list[str],
    samples_dir: Path,
    samples: list[Sample],
    mirror: str,
) -> Outcome:
    outcome = Outcome(userland)
    start = time.monotonic()
    with contextlib.ExitStack() as stack:
        try:
            _check(outcome, stack, args, files, samples_dir, samples, mirror)
        except CheckError as err:
            outcome.code, outcome.problem = EXIT_UNCHECKED, str(err)
        except (ValueError, KeyError) as err:  # e.g. JSON that is not what fmnist-edge prints
            outcome.code, outcome.problem = EXIT_UNCHECKED, f"unexpected output: {err!r}"
        finally:
            outcome.total_s = time.monotonic() - start
    return outcome


def _check(
    outcome: Outcome,
    stack: contextlib.ExitStack,
    args: argparse.Namespace,
    files: list[str],
    samples_dir: Path,
    samples: list[Sample],
    mirror: str,
) -> None:
    userland = outcome.userland
    rootfs, built = ensure_rootfs(userland, args.cache, mirror, rebuild=args.rebuild)
    if not built:
        log(f"== {userland.name}: cached root filesystem {rootfs}")
    chroot = Chroot(stack, userland, rootfs, args.cache / "pip")
    stage_inputs(chroot, args, files, samples_dir)
    venv = f"{INSIDE}/venv"

    log(f"== {userland.name}: the README's install, on an emulated {userland.cpu}")
    site = " --system-site-packages" if userland.system_site_packages else ""
    wheel = shlex.quote(f"{INSIDE}/{args.wheel.name}[edge]")
    install = chroot.run(f"python3 -m venv{site} {venv} && {venv}/bin/pip install -q {wheel}")
    if install.code != 0:
        raise CheckError(f"pip install failed: {_tail(install.stderr or install.stdout)}")
    outcome.install_s = install.seconds
    probe = chroot.run(
        f"{venv}/bin/pip check >&2 && {venv}/bin/python -c "
        "'import platform, numpy; print(platform.machine(), numpy.__version__)'"
    )
    if probe.code != 0:
        raise CheckError(f"the installed environment is broken: {_tail(probe.stderr)}")
    machine, outcome.numpy = probe.stdout.split()
    if machine != userland.machine:
        raise CheckError(f"platform.machine() is {machine!r}, expected {userland.machine!r}")

    log(f"== {userland.name}: classify, parity on the test set, bench")
    classify_ok = check_classify(outcome, chroot, samples)
    parity = chroot.run(
        f"{venv}/bin/fmnist-edge parity {INSIDE}/1 --data-dir {inside_data(args)} "
        f"--json {INSIDE}/parity.json"
    )
    log(parity.stdout.rstrip())
    if parity.code not in (EXIT_OK, EXIT_DRIFT):
        raise CheckError(f"parity exited {parity.code}: {_tail(parity.stderr)}")
    report = json.loads(chroot.path(f"{INSIDE}/parity.json").read_text())
    outcome.agreement = report["agreement"]
    outcome.parity_s = report["details"]["seconds"]
    bench = chroot.run(f"{venv}/bin/fmnist-edge bench {INSIDE}/1 --runs {args.bench_runs} --json")
    if bench.code != 0:
        raise CheckError(f"bench exited {bench.code}: {_tail(bench.stderr)}")
    timings = json.loads(bench.stdout)
    outcome.images_per_s, outcome.p50_ms = timings["images_per_s"], timings["p50_ms"]
    served_ok = check_serving(outcome, chroot, files)
    if parity.code == EXIT_DRIFT:
        outcome.problem = "; ".join(filter(None, [outcome.problem, *report["failures"]]))
    drift = parity.code == EXIT_DRIFT or not classify_ok or not served_ok
    outcome.code = EXIT_DRIFT if drift else EXIT_OK


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM and SIGHUP unwind like Ctrl-C, so every cleanup below runs.
    previous = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return _main(args)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _main(args: argparse.Namespace) -> int:
    names = list(USERLANDS) if args.userland == "all" else [args.userland]
    start = time.monotonic()
    outcomes: list[Outcome] = []
    try:
        with contextlib.ExitStack() as stack:
            files = check_inputs(args)
            args.cache = args.cache.resolve()
            samples_dir = Path(tempfile.mkdtemp(prefix="fmnist-pi-images-"))
            stack.callback(shutil.rmtree, samples_dir, ignore_errors=True)
            try:
                reference = args.bundle / files[3]
                samples = write_samples(args.data_dir, args.bundle, reference, samples_dir)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
                raise CheckError(f"cannot read the test set or reference outputs: {err}") from None
            if not samples:
                raise CheckError("no test image is classified confidently by the float model")
            binfmt = Binfmt(stack)
            for name in names:
                binfmt.register(USERLANDS[name])
            mirror = args.mirror or host_mirror()
            for name in names:
                outcome = check_userland(USERLANDS[name], args, files, samples_dir, samples, mirror)
                outcomes.append(outcome)
                print(outcome.line(), flush=True)
    except CheckError as err:
        print(f"tools/pi/check.py: error: {err}", file=sys.stderr)
        return EXIT_UNCHECKED
    except KeyboardInterrupt:
        print("tools/pi/check.py: interrupted; cleaned up", file=sys.stderr)
        return EXIT_UNCHECKED
    log(f"Raspberry Pi check finished in {time.monotonic() - start:.0f} s")
    codes = {outcome.code for outcome in outcomes}
    if EXIT_DRIFT in codes:
        return EXIT_DRIFT
    return EXIT_UNCHECKED if EXIT_UNCHECKED in codes else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
