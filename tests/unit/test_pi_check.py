"""The Raspberry Pi check's own logic (tools/pi): binfmt lines, cache keys, the files it
writes for `fmnist-edge classify`, and its exit code for bad input. No emulation here;
`.ci/run` runs the whole check on both userlands."""

from __future__ import annotations

import gzip
import importlib
import io
import json
import struct
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

TOOLS_PI = Path(__file__).resolve().parents[2] / "tools" / "pi"

AARCH64_CONF = (
    "# comment\n"
    r":qemu-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00:\xff\xff\xff\xff\xff\xff\xff\x00"
    ":/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF\n"
)


@pytest.fixture(scope="module")
def pi() -> Iterator[tuple[ModuleType, ModuleType, ModuleType]]:
    """(check, pi_emulation, pi_testset), imported the way the script imports them."""
    sys.path.insert(0, str(TOOLS_PI))
    try:
        yield tuple(importlib.import_module(m) for m in ("check", "pi_emulation", "pi_testset"))
    finally:
        sys.path.remove(str(TOOLS_PI))


def test_binfmt_line_renames_the_entry_and_keeps_its_match(pi) -> None:
    _, emulation, _ = pi
    line = emulation.binfmt_line(AARCH64_CONF, "fmnist-pi-arm64-1")
    fields = line.split(":")
    assert fields[1] == "fmnist-pi-arm64-1"
    assert fields[2:7] == AARCH64_CONF.splitlines()[1].split(":")[2:7]


def test_binfmt_line_adds_the_f_flag_once(pi) -> None:
    _, emulation, _ = pi
    without_f = AARCH64_CONF.replace(":OPF", ":OC")
    assert emulation.binfmt_line(without_f, "x").endswith(":OCF")
    assert emulation.binfmt_line(AARCH64_CONF, "x").endswith(":OPF")


def test_binfmt_line_refuses_a_malformed_entry(pi) -> None:
    _, emulation, _ = pi
    with pytest.raises(emulation.CheckError, match="unexpected binfmt line"):
        emulation.binfmt_line(":qemu-aarch64:M::magic\n", "x")


def test_cache_key_changes_with_the_package_list(pi) -> None:
    _, emulation, _ = pi
    arm64 = emulation.USERLANDS["arm64"]
    more = replace(arm64, extra_packages=("python3-numpy",))
    assert emulation.cache_key(arm64) == emulation.cache_key(replace(arm64))
    assert emulation.cache_key(arm64) != emulation.cache_key(more)
    assert emulation.cache_key(arm64) != emulation.cache_key(arm64, suite="trixie")


def test_png_bytes_decode_to_the_same_pixels(pi) -> None:
    _, _, testset = pi
    pixels = bytes(range(256)) * 3 + bytes(784 - 768)
    image = Image.open(io.BytesIO(testset.png_bytes(pixels, (28, 28, 1))))
    assert image.mode == "L"
    assert image.size == (28, 28)
    assert image.tobytes() == pixels


def test_npy_bytes_load_as_a_uint8_batch(pi) -> None:
    _, _, testset = pi
    images = [bytes([i]) * 784 for i in range(3)]
    array = np.load(io.BytesIO(testset.npy_bytes(images, (28, 28, 1))))
    assert array.dtype == np.uint8
    assert array.shape == (3, 28, 28, 1)
    assert [int(a[0, 0, 0]) for a in array] == [0, 1, 2]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_read_reference_matches_numpy(pi, tmp_path: Path, dtype: type) -> None:
    _, _, testset = pi
    probs = np.random.default_rng(0).random((7, 10)).astype(dtype)
    np.savez_compressed(tmp_path / "ref.npz", probabilities=probs)
    assert np.allclose(testset.read_reference(tmp_path / "ref.npz"), probs)


def test_read_reference_refuses_fortran_order(pi, tmp_path: Path) -> None:
    _, _, testset = pi
    with zipfile.ZipFile(tmp_path / "ref.npz", "w") as npz, npz.open("probabilities.npy", "w") as f:
        np.save(f, np.asfortranarray(np.ones((3, 10), np.float32)))
    with pytest.raises(ValueError, match="unsupported"):
        testset.read_reference(tmp_path / "ref.npz")


def test_pick_samples_takes_only_confident_right_answers(pi) -> None:
    _, _, testset = pi
    labels = bytes([0, 0, 1, 1, 0])
    images = b"".join(bytes([i]) * 784 for i in range(5))
    reference = [
        [0.6, 0.4],  # right but a narrow margin
        [0.1, 0.9],  # wrong
        [0.05, 0.95],  # right, confident: class 1
        [0.0, 1.0],  # class 1 already taken
        [0.9, 0.1],  # right, confident: class 0
    ]
    samples = testset.pick_samples(labels, images, reference)
    assert [(s.index, s.label) for s in samples] == [(4, 0), (2, 1)]
    assert samples[0].pixels == bytes([4]) * 784


def test_read_idx_refuses_a_truncated_file(pi, tmp_path: Path) -> None:
    _, _, testset = pi
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"\0\0\x08\x01" + struct.pack(">I", 5) + b"\1\2"))
    with pytest.raises(ValueError, match="shape"):
        testset.read_idx(path)


def test_missing_wheel_is_a_one_line_error_and_exit_2(pi, tmp_path: Path, capsys) -> None:
    check, _, _ = pi
    code = check.main(
        [
            "--bundle",
            str(tmp_path),
            "--data-dir",
            str(tmp_path),
            "--wheel",
            str(tmp_path / "missing.whl"),
            "--cache",
            str(tmp_path / "cache"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("tools/pi/check.py: error:")
    assert not (tmp_path / "cache").exists()


def test_summary_line_says_pass_and_every_figure(pi) -> None:
    check, emulation, _ = pi
    outcome = check.Outcome(
        emulation.USERLANDS["armhf"],
        code=0,
        runtime="tflite-runtime 2.14.0",
        numpy="1.24.2",
        install_s=25.2,
        classify="10/10",
        agreement=0.9961,
        parity_s=97.04,
        images_per_s=512.4,
        p50_ms=1.953,
        total_s=150,
    )
    line = outcome.line()
    assert line.startswith("armhf (cortex-a7): PASS")
    for figure in ("tflite-runtime 2.14.0", "99.61%", "97.0 s", "512 images/s", "1.95 ms", "25 s"):
        assert figure in line


def test_unreadable_test_set_is_a_one_line_error_and_exit_2(pi, tmp_path: Path, capsys) -> None:
    check, _, _ = pi
    bundle, data = tmp_path / "bundle", tmp_path / "data"
    bundle.mkdir()
    data.mkdir()
    manifest = {
        "tflite": {"int8": {"file": "m8.tflite"}, "float32": {"file": "m32.tflite"}},
        "reference": {"file": "ref.npz"},
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    for name in ("m8.tflite", "m32.tflite", "ref.npz"):
        (bundle / name).write_bytes(b"not what it says")
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (data / name).write_bytes(gzip.compress(b"not an IDX file"))
    (tmp_path / "w-0.1-py3-none-any.whl").write_bytes(b"")
    argv = ["--bundle", str(bundle), "--data-dir", str(data), "--cache", str(tmp_path / "c")]
    code = check.main([*argv, "--wheel", str(tmp_path / "w-0.1-py3-none-any.whl")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("tools/pi/check.py: error:")


def test_rgb_png_bytes_decode_to_the_same_pixels(pi) -> None:
    _, _, testset = pi
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image = Image.open(io.BytesIO(testset.png_bytes(pixels.tobytes(), (5, 7, 3))))
    assert image.mode == "RGB" and image.size == (7, 5)
    np.testing.assert_array_equal(np.asarray(image), pixels)


def _colour_bundle(folder: Path, shape: tuple[int, int, int] | None) -> Path:
    folder.mkdir()
    keys = ("height", "width", "channels")
    manifest = {} if shape is None else {"input": dict(zip(keys, shape, strict=True))}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize("labels_dtype", [np.int64, np.uint8])
def test_an_npz_test_set_gives_samples_of_the_bundle_shape(
    pi, tmp_path: Path, labels_dtype: type
) -> None:
    _, _, testset = pi
    images = np.random.default_rng(1).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2], labels_dtype)
    data = tmp_path / "data.npz"
    np.savez(data, x_train=images, y_train=labels, x_test=images, y_test=labels)
    probs = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    np.savez_compressed(tmp_path / "ref.npz", probabilities=probs)
    bundle = _colour_bundle(tmp_path / "bundle", (8, 8, 3))
    samples = testset.write_samples(data, bundle, tmp_path / "ref.npz", tmp_path / "out")
    assert [(s.index, s.label) for s in samples] == [(0, 0), (1, 1), (2, 2)]
    assert samples[2].pixels == images[2].tobytes()
    written = np.load(tmp_path / "out" / "samples.npy")
    np.testing.assert_array_equal(written, images[:3])
    png = np.asarray(Image.open(tmp_path / "out" / "test00001.png"))
    np.testing.assert_array_equal(png, images[1])
    assert testset.data_files(data) == [data]
    other = _colour_bundle(tmp_path / "other", None)  # before the contract: 28x28x1
    with pytest.raises(ValueError, match=r"the bundle's model takes \(28, 28, 1\)"):
        testset.write_samples(data, other, tmp_path / "ref.npz", tmp_path / "out2")


def test_data_without_test_files_is_refused(pi, tmp_path: Path) -> None:
    _, _, testset = pi
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(ValueError, match="t10k-images and t10k-labels"):
        testset.data_files(tmp_path)
