"""Image files through Pillow: a cheap probe of each file's size and colour when a folder is
scanned, and the decode to uint8 [H, W, C] when its pixels are needed. TF-free.

Every stage decodes with these two functions, so training, evaluation, calibration and
parity see the same pixels for the same file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from fmnist.errors import DataError

EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif"})
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_ERRORS = (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError)


@dataclass(frozen=True)
class Probe:
    height: int
    width: int
    colour: bool


def _is_colour(image: Image.Image) -> bool:
    if image.mode in _GRAY_MODES:
        return False
    if image.mode in ("P", "PA"):  # a palette of greys is a grayscale image
        palette = np.asarray(image.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
        return bool((palette != palette[:, :1]).any())
    return True


def probe(path: str) -> Probe | str:
    """Size and colour from the file's header (PNGs are checked whole: their chunks carry
    checksums, so truncation shows here rather than mid-training); else why it is unusable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                found = Probe(image.height, image.width, _is_colour(image))
                if image.format == "PNG":
                    image.verify()
    except (*_ERRORS, Image.DecompressionBombWarning) as err:
        return _reason(err)
    return found


def decode(path: str, shape: tuple[int, int, int]) -> np.ndarray:
    """The file's pixels as uint8 [H, W, C] of `shape`: converted to grayscale or RGB and
    resized (bilinear) where they differ. A file that fails here is a one-line DataError."""
    height, width, channels = shape
    try:
        with Image.open(path) as image:
            image = _to_mode(image, channels)
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except _ERRORS as err:
        raise DataError(f"{path}: cannot decode the image ({_reason(err)})") from None
    return pixels.reshape(shape)


def _to_mode(image: Image.Image, channels: int) -> Image.Image:
    if image.mode.startswith("I;16") or image.mode == "I":  # 16-bit grey: keep the high byte
        high = (np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        image = Image.fromarray(high)
    return image.convert("L" if channels == 1 else "RGB")


def _reason(err: BaseException) -> str:
    if isinstance(err, UnidentifiedImageError):
        return "not an image Pillow can read"
    if isinstance(err, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return "too many pixels (Pillow's decompression-bomb limit)"
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
