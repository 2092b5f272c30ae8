"""Which CPUs `precision = "auto"` trains in bfloat16 on: the rule on /proc/cpuinfo text."""

from __future__ import annotations

from pathlib import Path

import pytest

from fmnist.train.precision import bfloat16_pays, cpu_prefers_bfloat16

BASE_FLAGS = "fpu sse2 avx avx2 avx512f avx512bw avx512_vnni"


def cpuinfo(vendor: str, extra_flags: str, cpus: int = 2) -> str:
    """/proc/cpuinfo's shape: one block per logical CPU, `key<TAB>: value` lines."""
    block = (
        f"processor\t: {{n}}\nvendor_id\t: {vendor}\nmodel name\t: some CPU\n"
        f"flags\t\t: {BASE_FLAGS} {extra_flags}\nbugs\t\t: spectre_v1\n\n"
    )
    return "".join(block.format(n=n) for n in range(cpus))


@pytest.mark.parametrize(
    ("vendor", "extra_flags", "expected"),
    [
        ("GenuineIntel", "avx512_bf16 amx_bf16 amx_tile amx_int8", True),  # x1.43 measured
        ("AuthenticAMD", "avx512_bf16", True),  # x1.25 measured (AMD EPYC)
        ("GenuineIntel", "avx512_bf16 avx_vnni", False),  # x0.68 measured: no AMX
        ("GenuineIntel", "", False),  # emulated bfloat16
        ("AuthenticAMD", "", False),
    ],
)
def test_bfloat16_only_where_it_measured_faster(vendor, extra_flags, expected):
    assert bfloat16_pays(cpuinfo(vendor, extra_flags)) is expected


def test_a_flag_name_elsewhere_in_cpuinfo_does_not_count():
    text = cpuinfo("AuthenticAMD", "") + "model name\t: avx512_bf16 amx_bf16\n"
    assert bfloat16_pays(text) is False


def test_cpuinfo_without_flags_means_float32():
    assert (
        bfloat16_pays("Processor\t: AArch64 Processor rev 4\nFeatures\t: fp asimd bf16\n") is False
    )


def test_an_unreadable_cpuinfo_means_float32(tmp_path: Path):
    assert cpu_prefers_bfloat16(tmp_path / "missing") is False


def test_the_rule_reads_the_file_it_is_given(tmp_path: Path):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo("AuthenticAMD", "avx512_bf16"), encoding="ascii")
    assert cpu_prefers_bfloat16(path) is True
