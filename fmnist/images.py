"""Turning user input files into model input: uint8 [N, H, W, C] for one input contract.

How an image file becomes the input a model asks for (the same for `fmnist predict` and
`fmnist-edge classify`; H, W and C come from the contract, never from a constant):

1. Pillow opens it (PNG, JPEG, BMP, GIF, anything Pillow reads); EXIF rotation is applied,
   transparency is flattened onto black (onto white with `invert=True`, so that the
   background still ends up black), and it is converted to "L" (C = 1) or "RGB" (C = 3).
2. An image already H x W is used as it is. Otherwise `resize="pad"` (the default) scales
   it, keeping its aspect ratio, to fit the H x W box (Lanczos) and centres it on black, the
   way Fashion-MNIST's own images were made; `resize="stretch"` resizes it to H x W
   (bilinear), what `keras.utils.image_dataset_from_directory` and the folder datasets of
   `fmnist.data` do with images of another size.
3. With `invert=True` the pixels are inverted first (a dark item on a light background).

`.npy` files and IDX files (`*-ubyte`, `*.idx`, optionally gzipped) hold arrays
[N, H, W, C] or [H, W, C], or for C = 1 also [N, H, W] and [H, W]. Their header's shape and
dtype are checked against the contract before the data is read (a lying header must not
make us allocate gigabytes); integer values 0-255 of another dtype are accepted, fractions
such as 0-1 floats are refused. TF-free (numpy and Pillow only).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from fmnist.contract import InputContract
from fmnist.dataset import read_idx
from fmnist.errors import UserError
from fmnist.npyfile import NpyFormatError, NpyHeader, read_checked

RESIZE_MODES = ("pad", "stretch")
_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

Shape = tuple[int, int, int]  # (height, width, channels) of one image


class ImageError(UserError):
    """An input file that is missing, unreadable or not an image of a usable shape."""


def _shape_of(target: InputContract | Shape) -> Shape:
    return target.shape if isinstance(target, InputContract) else tuple(target)


def _is_idx(path: Path) -> bool:
    name = path.name.removesuffix(".gz")
    return name.endswith("-ubyte") or name.endswith(".idx")


def _open_converted(path: Path, channels: int, invert: bool):
    """The file as a Pillow image in "L" or "RGB", transparency flattened (see docstring)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            if image.mode in ("RGBA", "LA", "P", "PA"):
                image = image.convert("RGBA")
                fill = (255, 255, 255, 255) if invert else (0, 0, 0, 255)
                image = Image.alpha_composite(Image.new("RGBA", image.size, fill), image)
            return image.convert("L" if channels == 1 else "RGB")
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: image too large (Pillow's decompression-bomb limit)") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageError(f"{path}: not a readable image ({err.__class__.__name__})") from None


def load_image(
    path: str | os.PathLike,
    target: InputContract | Shape,
    *,
    invert: bool = False,
    resize: str = "pad",
) -> np.ndarray:
    """One image file as uint8 [H, W, C] (see the module docstring for the conversion)."""
    from PIL import Image, ImageOps

    if resize not in RESIZE_MODES:
        raise ImageError(f"unknown resize mode {resize!r} (one of: {', '.join(RESIZE_MODES)})")
    height, width, channels = _shape_of(target)
    image = _open_converted(Path(path), channels, invert)
    if invert:
        image = ImageOps.invert(image)
    if image.size != (width, height):
        if resize == "stretch":
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        else:
            image.thumbnail((width, height), Image.Resampling.LANCZOS)
            canvas = Image.new(image.mode, (width, height), 0)
            canvas.paste(image, ((width - image.width) // 2, (height - image.height) // 2))
            image = canvas
    return np.asarray(image, dtype=np.uint8).reshape(height, width, channels)


def _accepted_shape(shape: tuple[int, ...], target: Shape) -> bool:
    """[N,] H, W, C, or for one channel also [N,] H, W."""
    height, width, channels = target
    if len(shape) in (3, 4) and tuple(shape[-3:]) == target:
        return True
    return channels == 1 and len(shape) in (2, 3) and tuple(shape[-2:]) == (height, width)


def _shape_error(shape: tuple[int, ...], target: Shape) -> str:
    height, width, channels = target
    also = f" or [N, {height}, {width}]" if channels == 1 else ""
    return f"expected images of shape [N, {height}, {width}, {channels}]{also}, got {list(shape)}"


def _check_header(shape: tuple[int, ...], dtype: np.dtype, target: Shape) -> None:
    """Shape and dtype of an image array, judged from its header before the data is read."""
    if dtype.kind not in "uif":
        raise NpyFormatError(
            f"holds {dtype} values; expected pixel values 0-255 (uint8, or integers "
            "0-255 of another numeric dtype)"
        )
    if not _accepted_shape(shape, target):
        raise NpyFormatError(_shape_error(shape, target))


def _read_npy(path: Path, target: Shape) -> np.ndarray:
    def check(header: NpyHeader) -> None:
        _check_header(header.shape, header.dtype, target)

    with path.open("rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        if size == 0:
            raise ImageError(f"{path}: empty file (not a .npy array)")
        return read_checked(stream, size, check)


def _read_idx_checked(path: Path, target: Shape) -> np.ndarray:
    """An IDX array, its header checked before the payload is read."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        head = handle.read(4)
        if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _IDX_DTYPES:
            raise NpyFormatError("not an IDX file (bad magic number)")
        dims = handle.read(4 * head[3])
    if len(dims) != 4 * head[3]:
        raise NpyFormatError("truncated IDX header")
    shape = tuple(int.from_bytes(dims[i : i + 4], "big") for i in range(0, len(dims), 4))
    _check_header(shape, np.dtype(_IDX_DTYPES[head[2]]), target)
    return read_idx(path)


def _load_array(path: Path, target: Shape) -> np.ndarray:
    try:
        if path.suffix == ".npy":
            return _read_npy(path, target)
        return _read_idx_checked(path, target)
    except NpyFormatError as err:
        raise ImageError(f"{path}: not a usable image array: {err}") from None
    except UserError as err:  # read_idx's DataError
        raise ImageError(str(err)) from None
    except (OSError, EOFError) as err:
        raise ImageError(f"{path}: cannot read: {getattr(err, 'strerror', None) or err}") from None


def _as_pixels(array: np.ndarray, path: Path) -> np.ndarray:
    """uint8, or a one-line error for values that are not whole numbers 0-255."""
    if array.dtype == np.uint8:
        return array
    if (
        not np.all(np.isfinite(array))
        or array.min() < 0
        or array.max() > 255
        or not np.array_equal(array, np.round(array))
    ):
        raise ImageError(
            f"{path}: expected pixel values 0-255 (uint8), got {array.dtype} values in "
            f"[{array.min()}, {array.max()}]"
        )
    return array.astype(np.uint8)


def _as_batch(array: np.ndarray, path: Path, target: Shape) -> np.ndarray:
    """[N,] H, W[, C] -> uint8 [N, H, W, C]."""
    if not _accepted_shape(array.shape, target):
        raise ImageError(f"{path}: {_shape_error(array.shape, target)}")
    batch = array.reshape(-1, *target)
    if len(batch) == 0:
        raise ImageError(f"{path}: holds no images")
    return _as_pixels(batch, path)


def load_inputs(
    paths: list[str | os.PathLike],
    target: InputContract | Shape,
    *,
    invert: bool = False,
    resize: str = "pad",
) -> tuple[list[str], np.ndarray]:
    """Images from files of any supported kind: (a name per image, uint8 [N, H, W, C])."""
    if not paths:
        raise ImageError("no input files given")
    shape = _shape_of(target)
    names: list[str] = []
    batches: list[np.ndarray] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise ImageError(f"{path}: no such file")
        if path.suffix == ".npy" or _is_idx(path):
            batch = _as_batch(_load_array(path, shape), path, shape)
            batch = 255 - batch if invert else batch
        else:
            batch = load_image(path, shape, invert=invert, resize=resize)[None]
        names += [str(path)] if len(batch) == 1 else [f"{path}[{i}]" for i in range(len(batch))]
        batches.append(batch)
    return names, np.concatenate(batches)
