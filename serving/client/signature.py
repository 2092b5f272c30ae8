"""What a served model's signature asks for, read from its metadata (GetModelMetadata over
gRPC, `/metadata` over REST: the same JSON): the image input's shape and dtype.

Clients read it instead of assuming one model: `fmnist predict` resizes image files to it,
and grayscale batches are sent as [N, H, W] or [N, H, W, 1], whichever the signature takes
(exports from before the input contract take [N, 28, 28]). TF-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fmnist.errors import UserError

IMAGE_INPUT = "images"  # the input name of every exported signature


@dataclass(frozen=True)
class ImageInput:
    """One image of the signature's input: dims after the batch (-1: any), and the dtype."""

    signature: str
    dims: tuple[int, ...]
    dtype: str  # e.g. "DT_UINT8"

    @property
    def rank(self) -> int:
        """The rank of a batch: 3 for [N, H, W], 4 for [N, H, W, C]."""
        return len(self.dims) + 1

    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) for resizing image files; a UserError if the signature does not say."""
        dims = self.dims if len(self.dims) == 3 else (*self.dims, 1)
        if len(dims) != 3 or min(dims) < 1 or dims[2] not in (1, 3) or self.dtype != "DT_UINT8":
            raise UserError(
                f"signature {self.signature!r} input {IMAGE_INPUT!r} is {self.dtype} "
                f"{[-1, *self.dims]}, not uint8 images [-1, H, W, C] of a fixed size with C 1 or 3"
            )
        return dims


def signature_defs(metadata: dict[str, Any]) -> dict[str, Any]:
    """The signature map of a GetModelMetadata answer (gRPC or REST JSON)."""
    return metadata.get("metadata", {}).get("signature_def", {}).get("signature_def", {})


def image_input(metadata: dict[str, Any], signature: str = "serving_default") -> ImageInput:
    """The signature's `images` input; a UserError naming what the signature has instead."""
    signatures = signature_defs(metadata)
    if signature not in signatures:
        raise UserError(
            f"the served model has no signature {signature!r} "
            f"(signatures: {', '.join(sorted(signatures)) or 'none'})"
        )
    inputs = signatures[signature].get("inputs", {})
    if IMAGE_INPUT not in inputs:
        raise UserError(
            f"signature {signature!r} has no {IMAGE_INPUT!r} input "
            f"(inputs: {', '.join(sorted(inputs)) or 'none'}): not an image classifier"
        )
    spec = inputs[IMAGE_INPUT]
    shape = spec.get("tensor_shape", {})
    if shape.get("unknown_rank") or "dim" not in shape:
        raise UserError(f"signature {signature!r} input {IMAGE_INPUT!r} has no known shape")
    dims = tuple(int(d.get("size", -1)) for d in shape["dim"])
    return ImageInput(signature, dims[1:], str(spec.get("dtype", "DT_INVALID")))
