"""Input files to model input for any contract: image files of any size and mode, .npy and
IDX arrays checked against the contract, resize modes, --invert, errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist.contract import FASHION_MNIST, InputContract
from fmnist.images import ImageError, load_image, load_inputs

COLOUR = InputContract(32, 32, 3, ("a", "b", "c", "d", "e"))
WIDE = InputContract(16, 24, 1, ("x", "y"))


def _item(size: tuple[int, int], mode: str = "L", colour=(250, 40, 40)) -> Image.Image:
    """A bright rectangle (the 'item') on a black background."""
    image = Image.new("RGB", size, (0, 0, 0))
    w, h = size
    image.paste(colour, (w // 4, h // 4, 3 * w // 4, 3 * h // 4))
    return image.convert(mode)


CONVERSIONS = [
    # contract, file mode, file size
    (FASHION_MNIST, "L", (300, 200)),
    (FASHION_MNIST, "RGB", (64, 64)),
    (FASHION_MNIST, "RGBA", (28, 28)),
    (FASHION_MNIST, "P", (50, 90)),
    (FASHION_MNIST, "I;16", (40, 40)),
    (COLOUR, "RGB", (32, 32)),
    (COLOUR, "L", (100, 60)),
    (COLOUR, "P", (64, 64)),
    (WIDE, "RGB", (48, 32)),
]


@pytest.mark.parametrize(("contract", "mode", "size"), CONVERSIONS)
def test_any_mode_and_size_becomes_the_contract_shape(
    tmp_path: Path, contract: InputContract, mode: str, size: tuple[int, int]
) -> None:
    path = tmp_path / "item.png"
    _item(size, mode).save(path)
    names, images = load_inputs([path], contract)
    assert images.shape == (1, *contract.shape) and images.dtype == np.uint8
    centre = images[0, contract.height // 2, contract.width // 2]
    assert centre.max() > 60 and images[0, 0, 0].max() < 30  # item light, background dark
    assert names == [str(path)]


def test_colour_survives_for_rgb_contracts(tmp_path: Path) -> None:
    _item((32, 32), "RGB", colour=(250, 20, 20)).save(tmp_path / "red.png")
    pixel = load_image(tmp_path / "red.png", COLOUR)[16, 16]
    assert pixel[0] > 200 and pixel[1] < 40 and pixel[2] < 40


@pytest.mark.parametrize(
    ("resize", "top_rows_black"),
    [("pad", True), ("stretch", False)],
)
def test_resize_pads_or_stretches(tmp_path: Path, resize: str, top_rows_black: bool) -> None:
    Image.new("L", (300, 200), 255).save(tmp_path / "wide.png")  # all white, 3:2
    pixels = load_image(tmp_path / "wide.png", FASHION_MNIST, resize=resize)
    assert pixels.shape == (28, 28, 1)
    # pad keeps 3:2: 28x19 centred, black bands above and below; stretch fills the box.
    assert bool(pixels[:3].max() == 0) is top_rows_black
    assert pixels[14, 14, 0] == 255


def test_an_image_of_the_contract_size_is_used_as_it_is(tmp_path: Path) -> None:
    array = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "exact.png")
    np.testing.assert_array_equal(load_image(tmp_path / "exact.png", COLOUR), array)


def test_invert_for_dark_on_light_photos(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    Image.eval(_item((64, 64), "RGB", (255, 255, 255)), lambda v: 255 - v).save(path, quality=95)
    plain, inverted = load_image(path, COLOUR), load_image(path, COLOUR, invert=True)
    assert plain[16, 16].max() < 40 and plain[2, 2].min() > 200
    assert inverted[16, 16].min() > 200 and inverted[2, 2].max() < 40


def test_transparent_background_stays_dark_with_and_without_invert(tmp_path: Path) -> None:
    light = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    light.paste((250, 250, 250, 255), (10, 10, 30, 30))
    dark = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    dark.paste((10, 10, 10, 255), (10, 10, 30, 30))
    light.save(tmp_path / "light.png")
    dark.save(tmp_path / "dark.png")
    for pixels in (
        load_image(tmp_path / "light.png", COLOUR),
        load_image(tmp_path / "dark.png", COLOUR, invert=True),
    ):
        assert pixels[16, 16].min() > 200 and pixels[1, 1].max() < 30


def _idx(path: Path, array: np.ndarray) -> Path:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.tobytes())
    return path


ARRAYS = [
    # contract, stored shape, images it holds
    (FASHION_MNIST, (28, 28), 1),
    (FASHION_MNIST, (3, 28, 28), 3),
    (FASHION_MNIST, (3, 28, 28, 1), 3),
    (COLOUR, (32, 32, 3), 1),
    (COLOUR, (4, 32, 32, 3), 4),
    (WIDE, (2, 16, 24), 2),
]


@pytest.mark.parametrize(("contract", "shape", "count"), ARRAYS)
@pytest.mark.parametrize("kind", ["npy", "idx"])
def test_arrays_of_the_contract_shape_load(
    tmp_path: Path, contract: InputContract, shape: tuple, count: int, kind: str
) -> None:
    array = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    if kind == "npy":
        path = tmp_path / "x.npy"
        np.save(path, array)
    else:
        path = _idx(tmp_path / "x-images-idx3-ubyte.gz", array)
    names, images = load_inputs([path], contract)
    assert images.shape == (count, *contract.shape)
    np.testing.assert_array_equal(images.reshape(-1), array.reshape(-1))
    assert len(names) == count
    _, inverted = load_inputs([path], contract, invert=True)
    np.testing.assert_array_equal(inverted, 255 - images)


WRONG_SHAPES = [
    (FASHION_MNIST, (2, 28, 30), r"\[N, 28, 28, 1\] or \[N, 28, 28\], got \[2, 28, 30\]"),
    (FASHION_MNIST, (2, 28, 28, 3), r"got \[2, 28, 28, 3\]"),
    (COLOUR, (2, 32, 32), r"expected images of shape \[N, 32, 32, 3\], got \[2, 32, 32\]"),
    (COLOUR, (2, 28, 28, 1), r"got \[2, 28, 28, 1\]"),
    (WIDE, (2, 24, 16), r"\[N, 16, 24, 1\]"),
]


@pytest.mark.parametrize(("contract", "shape", "message"), WRONG_SHAPES)
@pytest.mark.parametrize("kind", ["npy", "idx"])
def test_arrays_of_another_shape_are_refused_from_the_header(
    tmp_path: Path, contract: InputContract, shape: tuple, message: str, kind: str
) -> None:
    array = np.zeros(shape, np.uint8)
    if kind == "npy":
        path = tmp_path / "x.npy"
        np.save(path, array)
        path.write_bytes(path.read_bytes()[:-1])  # data short: only the header may be read
    else:
        path = _idx(tmp_path / "x.idx.gz", array)
    with pytest.raises(ImageError, match=message) as raised:
        load_inputs([path], contract)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


BAD_FILES = [
    (b"hello, not an image", "notes.png", "not a readable image"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "truncated.png", "not a readable image"),
    (None, "missing.png", "no such file"),
    (b"\x00\x00\x07\x03", "bad-ubyte", "bad magic number"),
    (b"\x00\x00\x08\x03\x00\x00", "short-ubyte", "truncated IDX header"),
]


@pytest.mark.parametrize(("content", "name", "message"), BAD_FILES)
def test_bad_files_are_named(
    tmp_path: Path, content: bytes | None, name: str, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as info:
        load_inputs([path], COLOUR)
    assert name in str(info.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (-np.ones((28, 28)), r"pixel values 0-255 \(uint8\)"),
        (np.full((28, 28), 0.5), r"pixel values 0-255 \(uint8\)"),
        (np.zeros((0, 28, 28), np.uint8), "holds no images"),
        (np.zeros((0, 28, 28), np.float32), "holds no images"),
    ],
)
def test_bad_pixel_values(tmp_path: Path, values: np.ndarray, message: str) -> None:
    np.save(tmp_path / "x.npy", values)
    with pytest.raises(ImageError, match=message):
        load_inputs([tmp_path / "x.npy"], FASHION_MNIST)


def test_whole_number_floats_are_pixels_and_no_files_is_an_error(tmp_path: Path) -> None:
    np.save(tmp_path / "whole.npy", np.full((28, 28), 200.0))
    assert load_inputs([tmp_path / "whole.npy"], FASHION_MNIST)[1][0, 0, 0, 0] == 200
    with pytest.raises(ImageError, match="no input files"):
        load_inputs([], FASHION_MNIST)
    with pytest.raises(ImageError, match="unknown resize mode"):
        load_image(tmp_path / "whole.npy", FASHION_MNIST, resize="crop")


def test_decompression_bomb_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _item((200, 200)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow errors above twice this
    with pytest.raises(ImageError, match="too large"):
        load_inputs([tmp_path / "big.png"], COLOUR)


def test_mixed_files_concatenate_in_order(tmp_path: Path) -> None:
    batch = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "two.npy", batch)
    Image.fromarray(batch[0]).save(tmp_path / "one.png")
    names, images = load_inputs([tmp_path / "one.png", tmp_path / "two.npy"], COLOUR)
    assert names[0].endswith("one.png") and names[2].endswith("two.npy[1]")
    np.testing.assert_array_equal(images, np.concatenate([batch[:1], batch]))
