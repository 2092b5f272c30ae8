"""Small real-variety datasets for tests and demos, drawn or packed deterministically.

    python tools/example_datasets.py shapes OUT_DIR     # colour PNG folders, 32x32x3, 5 classes
    python tools/example_datasets.py digits OUT.npz     # scikit-learn's load_digits, 8x8x1

`shapes` draws one shape per image (random colour, position, size and background shade)
into OUT_DIR/train/<class>/ and OUT_DIR/test/<class>/; `digits` packs the 1,797 bundled
handwritten digits into the Keras datasets' .npz layout with their class names.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross", "ring")
SIZE = 32


def _draw(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], colour) -> None:
    left, top, right, bottom = box
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([((left + right) / 2, top), (right, bottom), (left, bottom)], fill=colour)
    elif shape == "cross":
        bar = max(2, (right - left) // 4)
        middle_x, middle_y = (left + right) // 2, (top + bottom) // 2
        draw.rectangle((middle_x - bar // 2, top, middle_x + bar // 2, bottom), fill=colour)
        draw.rectangle((left, middle_y - bar // 2, right, middle_y + bar // 2), fill=colour)
    else:  # ring
        draw.ellipse(box, outline=colour, width=max(2, (right - left) // 5))


def shape_image(shape: str, rng: np.random.Generator) -> Image.Image:
    """One RGB image: a dark random background and one bright shape, randomly placed."""
    background = tuple(int(v) for v in rng.integers(0, 90, 3))
    image = Image.new("RGB", (SIZE, SIZE), background)
    side = int(rng.integers(12, 27))
    left, top = (int(v) for v in rng.integers(0, SIZE - side + 1, 2))
    colour = tuple(int(v) for v in rng.integers(120, 256, 3))
    _draw(ImageDraw.Draw(image), shape, (left, top, left + side - 1, top + side - 1), colour)
    return image


def write_shapes(out: Path, train_per_class: int = 300, test_per_class: int = 60, seed: int = 0):
    """The shapes dataset under `out` (train/ and test/); returns `out`."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for shape in SHAPES:
            folder = out / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                shape_image(shape, rng).save(folder / f"{shape}_{index:04d}.png")
    return out


def write_digits(out: Path, test_fraction: float = 0.2, seed: int = 0) -> Path:
    """scikit-learn's load_digits as an .npz: x uint8 [N, 8, 8] (0-16 scaled to 0-255)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, stratify=labels, random_state=seed
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    names = np.array([str(d) for d in range(10)])
    np.savez_compressed(
        out, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, class_names=names
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("shapes", "digits"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=300, help="shapes: train per class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.kind == "shapes":
        test = max(1, math.ceil(args.per_class / 5))
        write_shapes(args.out, args.per_class, test, args.seed)
    else:
        write_digits(args.out, seed=args.seed)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
