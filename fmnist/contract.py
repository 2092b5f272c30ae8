"""The input contract: what one model takes and answers, decided once and read by every stage.

Height, width, channels, the pixel scaling and the class names are settled when a run is
trained (from its data) or a user's model is exported (from the model and the data), then
recorded in the run directory (`input.json`) and the bundle's manifest (`input`). The
SavedModel's signature (uint8 [-1, H, W, C]), both TFLite models, the float reference, the
edge runner, the clients and the parity checks all read it from there, never from a constant.

Images travel as uint8 [N, H, W, C] everywhere; the scaling says how the float model sees
them. TF-free (numpy only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fmnist.errors import UserError

# How uint8 pixels become the float model's input. "model": the model scales them itself
# (a Rescaling or Normalization layer inside), so it is fed the raw values as float32.
SCALINGS = {
    "unit": "pixels / 255, in [0, 1]",
    "symmetric": "pixels / 127.5 - 1, in [-1, 1]",
    "raw": "pixel values 0-255 as float32",
    "model": "pixel values 0-255; the model scales them itself",
}
CHANNELS = (1, 3)
MAX_SIDE = 4096  # larger images are a mistake, not a classifier input
CONTRACT_FILE = "input.json"  # in a run directory


class ContractError(UserError):
    """An input contract that is missing a field or holds an impossible value."""


@dataclass(frozen=True)
class InputContract:
    height: int
    width: int
    channels: int
    class_names: tuple[str, ...]
    scaling: str = "unit"
    dtype: str = "uint8"

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            value = getattr(self, name)
            if type(value) is not int or not 1 <= value <= MAX_SIDE:
                raise ContractError(
                    f"input {name} must be a whole number 1-{MAX_SIDE}, got {value!r}"
                )
        if self.channels not in CHANNELS:
            raise ContractError(
                f"input channels must be 1 (grayscale) or 3 (RGB), got {self.channels!r}"
            )
        if self.scaling not in SCALINGS:
            raise ContractError(
                f"unknown pixel scaling {self.scaling!r} (one of: {', '.join(SCALINGS)})"
            )
        if self.dtype != "uint8":
            raise ContractError(f"input dtype must be uint8 (image pixels), got {self.dtype!r}")
        names = self.class_names
        if len(names) < 2 or not all(isinstance(n, str) and n for n in names):
            raise ContractError(f"a classifier needs at least 2 named classes, got {list(names)!r}")
        if len(set(names)) != len(names):
            raise ContractError(f"class names repeat: {list(names)!r}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """One image: (height, width, channels)."""
        return (self.height, self.width, self.channels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> str:
        """One line for logs and reports: `32x32x3 uint8, 5 classes, pixels / 255, in [0, 1]`."""
        return (
            f"{self.height}x{self.width}x{self.channels} uint8, {self.num_classes} classes, "
            f"{SCALINGS[self.scaling]}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "width": self.width,
            "channels": self.channels,
            "dtype": self.dtype,
            "scaling": self.scaling,
            "class_names": list(self.class_names),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "input contract") -> InputContract:
        if not isinstance(data, dict):
            raise ContractError(f"{where}: not a JSON object")
        missing = [k for k in ("height", "width", "channels", "class_names") if k not in data]
        if missing:
            raise ContractError(f"{where}: missing {', '.join(missing)}")
        names = data["class_names"]
        if not isinstance(names, list):
            raise ContractError(f"{where}: class_names must be a list of strings")
        try:
            return cls(
                height=data["height"],
                width=data["width"],
                channels=data["channels"],
                class_names=tuple(names),
                scaling=data.get("scaling", "unit"),
                dtype=data.get("dtype", "uint8"),
            )
        except ContractError as err:
            raise ContractError(f"{where}: {err}") from None

    def with_scaling(self, scaling: str) -> InputContract:
        return InputContract(self.height, self.width, self.channels, self.class_names, scaling)

    def check_images(self, images: np.ndarray, where: str = "images") -> None:
        """A one-line error unless `images` is uint8 [N, H, W, C] of this contract."""
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != self.shape:
            raise ContractError(
                f"{where}: expected uint8 [N, {self.height}, {self.width}, {self.channels}], "
                f"got {images.dtype} {list(images.shape)}"
            )

    def scale(self, images: np.ndarray) -> np.ndarray:
        """uint8 pixels [N, H, W, C] -> the float model's float32 input, as numpy.

        "unit" divides (the same bits as TensorFlow's eager division; graphs multiply by
        1/255, a last-bit difference for half the values, so tensors use scale_tensor)."""
        pixels = images.astype(np.float32)
        if self.scaling == "unit":
            return pixels / np.float32(255.0)
        if self.scaling == "symmetric":
            return pixels / np.float32(127.5) - np.float32(1.0)
        return pixels

    def scale_tensor(self, images: Any) -> Any:
        """The same rule on a TensorFlow tensor (inside a graph too)."""
        import tensorflow as tf

        pixels = tf.cast(images, tf.float32)
        if self.scaling == "unit":
            return pixels / 255.0
        if self.scaling == "symmetric":
            return pixels / 127.5 - 1.0
        return pixels

    def input_range(self) -> tuple[float, float]:
        """The float model's input range (the int8 TFLite calibration pins it with an all-0
        and an all-255 image, so raw uint8 pixels map exactly)."""
        return {"unit": (0.0, 1.0), "symmetric": (-1.0, 1.0)}.get(self.scaling, (0.0, 255.0))


FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MNIST_CLASSES = tuple(str(digit) for digit in range(10))

# What every run and bundle made before the contract existed was: absent means this.
FASHION_MNIST = InputContract(28, 28, 1, FASHION_MNIST_CLASSES, "unit")
