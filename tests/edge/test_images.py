"""Input files to model input: images of any size and mode, .npy arrays, IDX files, errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist.images import ImageError, load_image, load_inputs


def _item(size: tuple[int, int], mode: str = "L") -> Image.Image:
    """A bright rectangle (the 'item') on a dark background, like Fashion-MNIST."""
    image = Image.new("L", size, 0)
    w, h = size
    image.paste(255, (w // 4, h // 4, 3 * w // 4, 3 * h // 4))
    return image.convert(mode)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16"])
def test_any_mode_and_size_becomes_28x28_grayscale(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "item.png"
    _item((300, 200), mode).save(path)
    pixels = load_image(path)
    assert pixels.shape == (28, 28) and pixels.dtype == np.uint8
    assert pixels[14, 14] > 200 and pixels[0, 0] < 30  # item stays light, background dark
    # Aspect ratio kept: 300x200 scales to 28x19, centred with black bands above and below.
    assert pixels[:3].max() == 0 and pixels[-3:].max() == 0


def test_jpeg_and_invert_for_dark_on_light_photos(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    Image.eval(_item((64, 64), "RGB"), lambda v: 255 - v).save(path, quality=95)
    plain, inverted = load_image(path), load_image(path, invert=True)
    assert plain[14, 14] < 40 and plain[2, 2] > 200
    assert inverted[14, 14] > 200 and inverted[2, 2] < 40


def test_npy_and_idx_batches(tmp_path: Path) -> None:
    batch = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "one.npy", batch[0])
    np.save(tmp_path / "three.npy", batch[..., None])
    header = bytes([0, 0, 0x08, 3]) + b"".join(d.to_bytes(4, "big") for d in batch.shape)
    with gzip.open(tmp_path / "x-images-idx3-ubyte.gz", "wb") as handle:
        handle.write(header + batch.tobytes())
    names, images = load_inputs(
        [tmp_path / "one.npy", tmp_path / "three.npy", tmp_path / "x-images-idx3-ubyte.gz"]
    )
    assert images.shape == (7, 28, 28)
    assert names[0].endswith("one.npy") and names[1].endswith("three.npy[0]")
    np.testing.assert_array_equal(images[1:4], batch)
    np.testing.assert_array_equal(images[4:], batch)
    _, inverted = load_inputs([tmp_path / "one.npy"], invert=True)
    np.testing.assert_array_equal(inverted[0], 255 - batch[0])


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"hello, not an image", "notes.png", "not a readable image"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "truncated.png", "not a readable image"),
        (None, "missing.png", "no such file"),
    ],
)
def test_bad_image_files_are_named(
    tmp_path: Path, content: bytes | None, name: str, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as info:
        load_inputs([path])
    assert name in str(info.value)


def test_wrong_array_shapes_and_empty_list(tmp_path: Path) -> None:
    np.save(tmp_path / "wide.npy", np.zeros((2, 28, 30), dtype=np.uint8))
    with pytest.raises(ImageError, match=r"expected images of shape \[N, 28, 28\]"):
        load_inputs([tmp_path / "wide.npy"])
    np.save(tmp_path / "neg.npy", -np.ones((28, 28)))
    np.save(tmp_path / "unit.npy", np.full((28, 28), 0.5))  # 0-1 floats are not pixels
    for bad in ("neg.npy", "unit.npy"):
        with pytest.raises(ImageError, match=r"pixel values 0-255 \(uint8\)"):
            load_inputs([tmp_path / bad])
    np.save(tmp_path / "whole.npy", np.full((28, 28), 200.0))  # integral floats are fine
    assert load_inputs([tmp_path / "whole.npy"])[1][0, 0, 0] == 200
    for dtype in (np.uint8, np.float32):
        np.save(tmp_path / "empty.npy", np.zeros((0, 28, 28), dtype))
        with pytest.raises(ImageError, match="holds no images"):
            load_inputs([tmp_path / "empty.npy"])
    with pytest.raises(ImageError, match="no input files"):
        load_inputs([])


def test_transparent_background_stays_dark_with_and_without_invert(tmp_path: Path) -> None:
    light = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # transparent all round
    light.paste((250, 250, 250, 255), (10, 10, 30, 30))  # a light, opaque item
    dark = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    dark.paste((10, 10, 10, 255), (10, 10, 30, 30))  # a dark item: needs --invert
    light.save(tmp_path / "light.png")
    dark.save(tmp_path / "dark.png")
    for pixels in (
        load_image(tmp_path / "light.png"),
        load_image(tmp_path / "dark.png", invert=True),
    ):
        assert pixels[14, 14] > 200 and pixels[1, 1] < 30


def test_decompression_bomb_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _item((200, 200)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow errors above twice this
    with pytest.raises(ImageError, match="too large"):
        load_inputs([tmp_path / "big.png"])
