"""Whether bfloat16 training pays off on this CPU, read from Linux's /proc/cpuinfo.

bfloat16 units alone do not decide it: an Intel Xeon with AVX512-BF16 but no AMX trains
bfloat16 slower than float32 (benchmarks/bench_train_step.py; docs/accuracy.md). So "auto"
takes bfloat16 on AMX, or on AVX512-BF16 from AMD, and float32 everywhere else. No
TensorFlow here: the rule is unit-tested on cpuinfo text.
"""

from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def bfloat16_pays(cpuinfo: str) -> bool:
    """True if the CPU described by `cpuinfo` (the text of /proc/cpuinfo) trains faster in
    bfloat16 than in float32, by the rule above."""
    flags: set[str] = set()
    vendor = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "flags":
            flags.update(value.split())
        elif key == "vendor_id":
            vendor = value.strip()
    if "amx_bf16" in flags:
        return True
    return "avx512_bf16" in flags and vendor == "AuthenticAMD"


def cpu_prefers_bfloat16(cpuinfo: Path = CPUINFO) -> bool:
    """`bfloat16_pays` for this machine; False where /proc/cpuinfo cannot be read."""
    try:
        text = cpuinfo.read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return bfloat16_pays(text)
