"""Emulated Raspberry Pi OS userlands: qemu binfmt entries, cached Debian root filesystems, chroots.

Everything set up here is undone by the `ExitStack` it is registered on, including after
Ctrl-C or SIGTERM: binfmt entries this process registered, mounts it made, processes it
started inside a chroot, temporary directories.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
BINFMT_CONF = Path("/usr/lib/binfmt.d")  # Debian's qemu-user-static puts its entries here
SUITE = "bookworm"  # what Raspberry Pi OS 12 is built on
# libstdc++6: the TFLite runtimes' wheels link it (minbase has it through apt; we skip apt).
PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates", "libstdc++6")
CACHE_FORMAT = 1  # bump to rebuild every cached root filesystem


@dataclass(frozen=True)
class Userland:
    name: str  # the check's name for it, as Raspberry Pi OS calls its images
    arch: str  # Debian architecture
    qemu: str  # binfmt entry of Debian's qemu-user-static
    cpu: str  # pinned: qemu's default `max` CPU made XNNPACK give wrong, varying results
    machine: str  # what platform.machine() must say, since pip's markers read it
    extra_packages: tuple[str, ...] = ()
    system_site_packages: bool = False


USERLANDS = {
    "arm64": Userland("arm64", "arm64", "qemu-aarch64", "cortex-a72", "aarch64"),
    # PyPI has no armv7l wheels of numpy<2, Pillow or grpcio: Debian's, through the venv.
    "armhf": Userland(
        "armhf",
        "armhf",
        "qemu-arm",
        "cortex-a7",
        "armv7l",
        extra_packages=("python3-numpy", "python3-pil", "python3-grpcio"),
        system_site_packages=True,
    ),
}


class CheckError(Exception):
    """The check could not be carried out (exit code 2)."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_host(cmd: list[str], *, what: str, timeout: float | None = None) -> None:
    """Run a host command in its own process group, killed with it on error or interruption."""
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        code = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if code != 0:
        raise CheckError(f"{what} failed (exit {code}): {' '.join(cmd)}")


# --- binfmt ----------------------------------------------------------------------------------


def binfmt_line(conf_text: str, name: str) -> str:
    """A binfmt_misc registration from a binfmt.d line, renamed and with the F flag.

    F makes the kernel open the interpreter now, so it works inside a chroot that lacks it.
    """
    line = next(
        (raw.strip() for raw in conf_text.splitlines() if raw.strip().startswith(":")), None
    )
    if line is None:
        raise CheckError("no binfmt registration line found")
    fields = line[1:].split(":")
    if len(fields) != 7:
        raise CheckError(f"unexpected binfmt line: {line}")
    flags = fields[6]
    fields[0] = name
    fields[6] = flags if "F" in flags else flags + "F"
    return ":" + ":".join(fields)


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


class Binfmt:
    """Registers qemu entries under names of its own; unregisters exactly those at the end.

    Entries added later take precedence in the kernel, so ours win over any the host has,
    and the host's are never touched.
    """

    PREFIX = "fmnist-pi-"

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self.stack = stack
        if not (BINFMT_DIR / "register").exists():
            run_host(
                ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)],
                what="mounting binfmt_misc",
            )
            stack.callback(subprocess.run, ["umount", str(BINFMT_DIR)], check=False)
        self._drop_stale()

    def _drop_stale(self) -> None:
        """Entries a killed run of this script left behind (its pid is in the name)."""
        for entry in BINFMT_DIR.glob(f"{self.PREFIX}*"):
            pid = entry.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not _pid_alive(int(pid)):
                log(f"removing binfmt entry {entry.name} left by a killed run")
                entry.write_text("-1")

    def register(self, userland: Userland) -> None:
        conf = BINFMT_CONF / f"{userland.qemu}.conf"
        if not conf.exists():
            raise CheckError(f"{conf} not found: apt-get install qemu-user-static")
        name = f"{self.PREFIX}{userland.arch}-{os.getpid()}"
        line = binfmt_line(conf.read_text(), name)
        interpreter = Path(line[1:].split(":")[5])
        if not interpreter.exists():
            raise CheckError(f"{interpreter} not found: apt-get install qemu-user-static")
        (BINFMT_DIR / "register").write_text(line)
        self.stack.callback(self._unregister, BINFMT_DIR / name)

    @staticmethod
    def _unregister(entry: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            entry.write_text("-1")


# --- root filesystems ------------------------------------------------------------------------


def cache_key(userland: Userland, suite: str = SUITE) -> str:
    """Changes whenever what the root filesystem is built from changes."""
    spec = {
        "format": CACHE_FORMAT,
        "suite": suite,
        "arch": userland.arch,
        "variant": "essential",
        "packages": sorted(PACKAGES + userland.extra_packages),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def host_mirror() -> str:
    """The Debian mirror the host's apt uses (deb822 or one-line sources), else deb.debian.org."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            for line in path.read_text().splitlines():
                words = line.split("#", 1)[0].split()
                for word in words:
                    if word.startswith(("http://", "https://")) and word.rstrip("/").endswith(
                        "/debian"
                    ):
                        return word
    return "http://deb.debian.org/debian"


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path`, deepest first."""
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """Unmount anything left below `path`, then delete it; never deletes through a mount."""
    for point in mounts_under(path):
        subprocess.run(["umount", "-l", point], check=False)
    if mounts_under(path):
        log(f"warning: {path} still has mounts; left in place")
        return
    shutil.rmtree(path, ignore_errors=True)


def ensure_rootfs(
    userland: Userland, cache: Path, mirror: str, *, rebuild: bool = False
) -> tuple[Path, bool]:
    """The cached root filesystem for `userland`, built first if missing: (path, built now).

    It is built in a temporary directory and renamed into place, so an interrupted build
    never leaves a half-built cache behind.
    """
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / f"rootfs-{userland.arch}-{cache_key(userland)}"
    for old in cache.glob(f"rootfs-{userland.arch}-*"):
        if old != final or rebuild:
            log(f"removing stale root filesystem {old}")
            remove_tree(old)
    for partial in cache.glob(f".build-{userland.arch}-*"):
        pid = partial.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            remove_tree(partial)
    if final.is_dir():
        return final, False
    building = cache / f".build-{userland.arch}-{os.getpid()}"
    packages = ",".join(PACKAGES + userland.extra_packages)
    # On a non-Debian host (e.g. Ubuntu CI runners) apt would not trust Debian's archive.
    keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    keyrings = [f"--keyring={keyring}"] if keyring.is_file() else []
    log(f"== {userland.name}: building a {SUITE} root filesystem into {final} (mmdebstrap)")
    start = time.monotonic()
    try:
        run_host(
            [
                "mmdebstrap",
                "--quiet",
                "--mode=root",
                "--variant=essential",
                f"--arch={userland.arch}",
                f"--include={packages}",
                *keyrings,
                # Documentation and translations are never read here: smaller, faster.
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                SUITE,
                str(building),
                mirror,
            ],
            what=f"building the {userland.name} root filesystem",
        )
        building.rename(final)
    finally:
        if building.exists():
            remove_tree(building)
    log(f"   built in {time.monotonic() - start:.0f} s")
    return final, True


# --- chroot sessions -------------------------------------------------------------------------


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    seconds: float


class Chroot:
    """A throw-away copy-on-write view of a cached root filesystem: /proc, /dev, pip cache.

    The cached root filesystem is the overlay's read-only lower layer and never changes.
    """

    def __init__(
        self, stack: contextlib.ExitStack, userland: Userland, rootfs: Path, pip_cache: Path
    ) -> None:
        self.userland = userland
        self.stack = stack
        self.work = Path(tempfile.mkdtemp(prefix=f"fmnist-pi-{userland.name}-"))
        stack.callback(remove_tree, self.work)
        self.root = self.work / "root"
        for sub in ("upper", "overlay-work", "root"):
            (self.work / sub).mkdir()
        upper, scratch = self.work / "upper", self.work / "overlay-work"
        options = f"lowerdir={rootfs},upperdir={upper},workdir={scratch}"
        self._mount(["-t", "overlay", "overlay", "-o", options], self.root)
        self._mount(["-t", "proc", "proc"], self.root / "proc")
        # No /sys: under qemu it would describe the host's x86 CPUs, and LiteRT's cpuinfo
        # crashed reading it (segfault in classify); without it, cpuinfo falls back.
        self._mount(["-t", "tmpfs", "-o", "mode=755,size=64m", "devtmp"], self.root / "dev")
        for name, major, minor in (
            ("null", 1, 3),
            ("zero", 1, 5),
            ("random", 1, 8),
            ("urandom", 1, 9),
        ):
            os.mknod(self.root / "dev" / name, 0o20666, os.makedev(major, minor))
            os.chmod(self.root / "dev" / name, 0o666)
        (self.root / "dev" / "shm").mkdir()
        os.symlink("/proc/self/fd", self.root / "dev" / "fd")
        pip_cache.mkdir(parents=True, exist_ok=True)
        (self.root / "root/.cache/pip").mkdir(parents=True, exist_ok=True)
        self._mount(["--bind", str(pip_cache)], self.root / "root/.cache/pip")
        resolv = self.root / "etc/resolv.conf"
        resolv.unlink(missing_ok=True)
        shutil.copyfile("/etc/resolv.conf", resolv)
        self._trust_local_cas()
        stack.callback(self._kill_leftovers)

    def _trust_local_cas(self, local: Path = Path("/usr/local/share/ca-certificates")) -> None:
        """CAs the host's admin added (e.g. a TLS-inspecting proxy's) are trusted inside too,
        as they would be on a Pi on the same network; Debian's pip reads the system bundle."""
        bundle = self.path("/etc/ssl/certs/ca-certificates.crt")
        for cert in sorted(local.rglob("*.crt")) if local.is_dir() else []:
            target = self.path(str(cert))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cert, target)
            with bundle.open("a") as f:
                f.write("\n" + cert.read_text().strip() + "\n")

    def _mount(self, args: list[str], target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        run_host(["mount", *args, str(target)], what=f"mounting {target}")
        self.stack.callback(subprocess.run, ["umount", "-l", str(target)], check=False)

    def _kill_leftovers(self) -> None:
        """Processes still running inside this chroot: only ours can be there."""
        root = str(self.root.resolve())
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if os.readlink(proc / "root") == root:
                    os.kill(int(proc.name), signal.SIGKILL)

    def path(self, inside: str) -> Path:
        """The host path of a path inside the chroot."""
        return self.root / inside.lstrip("/")

    def run(self, command: str, *, timeout: float = 1800) -> Result:
        """Run a shell command inside the chroot on the pinned emulated CPU."""
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "QEMU_CPU": self.userland.cpu,  # read by qemu-user in every emulated process
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_PROGRESS_BAR": "off",
        }
        start = time.monotonic()
        proc = subprocess.Popen(
            ["chroot", str(self.root), "/bin/sh", "-c", command],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            stderr += f"\ntimed out after {timeout:.0f} s"
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return Result(proc.returncode, stdout, stderr, time.monotonic() - start)
