"""Turning user input files into model input: uint8 [N, 28, 28], light object on a dark background.

How an image file becomes a Fashion-MNIST-like input (the same for `fmnist predict` and
`fmnist-edge classify`):

1. Pillow opens it (PNG, JPEG, or anything else Pillow reads); EXIF rotation is applied,
   transparency is flattened onto black (onto white with `invert=True`, so that the
   background still ends up black), and it is converted to 8-bit grayscale ("L").
2. It is scaled, keeping its aspect ratio, to fit a 28x28 box (Lanczos filter), and centred
   on a black 28x28 canvas.
3. With `invert=True` the pixels are inverted first. Fashion-MNIST items are light on a
   dark background; a photo of a dark item on a light background (the usual product
   shot) needs `--invert`.

`.npy` files hold uint8 arrays [28, 28], [N, 28, 28] or [N, 28, 28, 1] (integer values
0-255 of another dtype are accepted; fractions such as 0-1 floats are refused; the header's
shape and dtype are checked before the data is read, so a lying header cannot make us
allocate gigabytes); IDX files (`*-ubyte`, `*.idx`, optionally gzipped) hold the same
shapes, as in the official dataset. TF-free (numpy and Pillow only).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fmnist.dataset import read_idx
from fmnist.errors import UserError
from fmnist.npyfile import NpyFormatError, NpyHeader, read_checked

SIZE = 28


class ImageError(UserError):
    """An input file that is missing, unreadable or not an image of a usable shape."""


def _is_idx(path: Path) -> bool:
    name = path.name.removesuffix(".gz")
    return name.endswith("-ubyte") or name.endswith(".idx")


def load_image(path: str | os.PathLike, *, invert: bool = False) -> np.ndarray:
    """One image file as uint8 [28, 28] (see the module docstring for the conversion)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            if image.mode in ("RGBA", "LA", "P"):
                image = image.convert("RGBA")
                fill = (255, 255, 255, 255) if invert else (0, 0, 0, 255)
                background = Image.new("RGBA", image.size, fill)
                image = Image.alpha_composite(background, image)
            image = image.convert("L")
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: image too large (Pillow's decompression-bomb limit)") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageError(f"{path}: not a readable image ({err.__class__.__name__})") from None
    if invert:
        image = ImageOps.invert(image)
    image.thumbnail((SIZE, SIZE), Image.Resampling.LANCZOS)
    canvas = Image.new("L", (SIZE, SIZE), 0)
    canvas.paste(image, ((SIZE - image.width) // 2, (SIZE - image.height) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def _load_array(path: Path) -> np.ndarray:
    if path.suffix != ".npy":
        return read_idx(path)
    try:
        with path.open("rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            if size == 0:
                raise ImageError(f"{path}: empty file (not a .npy array)")
            return read_checked(stream, size, _check_npy_header)
    except NpyFormatError as err:
        raise ImageError(f"{path}: not a usable .npy image array: {err}") from None
    except OSError as err:
        raise ImageError(f"{path}: cannot read: {err.strerror or err}") from None


def _check_npy_header(header: NpyHeader) -> None:
    """Shape and dtype of an image array, judged from its header before the data is read."""
    if header.dtype.kind not in "uif":
        raise NpyFormatError(
            f"holds {header.dtype} values; expected pixel values 0-255 (uint8, or integers "
            "0-255 of another numeric dtype)"
        )
    shape = header.shape
    if len(shape) == 4 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) not in (2, 3) or shape[-2:] != (SIZE, SIZE):
        raise NpyFormatError(f"expected images of shape [N, 28, 28], got {list(header.shape)}")


def _as_batch(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != (SIZE, SIZE):
        raise ImageError(f"{path}: expected images of shape [N, 28, 28], got {list(array.shape)}")
    if len(array) == 0:
        raise ImageError(f"{path}: holds no images")
    if array.dtype != np.uint8:
        if (
            not np.issubdtype(array.dtype, np.number)
            or np.iscomplexobj(array)
            or not np.all(np.isfinite(array))
            or array.min() < 0
            or array.max() > 255
            or not np.array_equal(array, np.round(array))
        ):
            raise ImageError(
                f"{path}: expected pixel values 0-255 (uint8), got {array.dtype} values in "
                f"[{array.min()}, {array.max()}]"
            )
        array = array.astype(np.uint8)
    return array


def load_inputs(
    paths: list[str | os.PathLike], *, invert: bool = False
) -> tuple[list[str], np.ndarray]:
    """Images from files of any supported kind: (a name per image, uint8 [N, 28, 28])."""
    if not paths:
        raise ImageError("no input files given")
    names: list[str] = []
    batches: list[np.ndarray] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise ImageError(f"{path}: no such file")
        if path.suffix == ".npy" or _is_idx(path):
            batch = _as_batch(_load_array(path), path)
            batch = 255 - batch if invert else batch
        else:
            batch = load_image(path, invert=invert)[None]
        names += [str(path)] if len(batch) == 1 else [f"{path}[{i}]" for i in range(len(batch))]
        batches.append(batch)
    return names, np.concatenate(batches)
