"""Every image the network sees passes through here: any size and mode -> (3, S, S) float.

Modes: grey, grey+alpha, RGB, RGBA, palette, 16-bit and 32-bit grey are converted, not
refused; alpha is composited over black. A non-square image is centre-cropped to a square
first (the camera's fov spans the shorter side, so cropping keeps the geometry), then resized
with an area (box) filter, which matches how training images were anti-aliased. An image
that records an EXIF orientation is read turned upright (``upright``), as viewers show it.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from PIL import Image

EXIF_ORIENTATION = 0x0112  # the EXIF tag that says how the stored pixels are turned
# Each EXIF orientation (2-8; 1 is upright) -> the transpose that makes the stored pixels upright
# (as image viewers, browsers and OpenCV's imread show them).
UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}


def orientation(image: Image.Image) -> int:
    """The image's EXIF orientation, 1 (upright) where it has none or an unknown value."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns of damaged EXIF, then reads what it can
            value = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - damaged metadata of any kind (struct.error too): read the pixels as stored
        return 1
    return value if value in UPRIGHT else 1


def upright(image: Image.Image) -> Image.Image:
    """A decoded image turned as its EXIF orientation says (a phone or camera that stores its
    sensor's rows and records how it was held), the image itself where it is already upright.
    The turned image keeps no EXIF or XMP (which would say to turn it again): turning twice is
    turning once; its ``info["exif_orientation"]`` says what it was turned by. The camera a
    request sends describes the upright image."""
    turn = orientation(image)
    if turn == 1:
        return image
    turned = image.transpose(UPRIGHT[turn])
    for key in ("exif", "xmp", "XML:com.adobe.xmp"):
        turned.info.pop(key, None)
    turned.info["exif_orientation"] = turn
    return turned


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # integer arithmetic on the image's own array: no float copies of a large image
        arr = np.asarray(image)
        if image.mode != "I":  # 16-bit: the high byte
            small = (arr >> 8).astype(np.uint8)
        elif arr.max() > 255:
            small = (np.clip(arr, 0, 65535) >> 8).astype(np.uint8)
        else:
            small = np.clip(arr, 0, 255).astype(np.uint8)
        image = Image.fromarray(small, "L")
    elif image.mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        image = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(black, rgba)
    return image.convert("RGB")


def image_tensor(image: Image.Image) -> torch.Tensor:
    """Any PIL image -> (3, H, W) float32 in [0, 1] (modes converted by ``to_rgb``)."""
    return torch.from_numpy(np.asarray(to_rgb(image), dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


def to_network_input(image: Image.Image, size: int) -> torch.Tensor:
    """PIL image -> (3, size, size) float32 in [0, 1]."""
    image = to_rgb(image)
    w, h = image.size
    if w != h:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BOX if image.size[0] > size else Image.Resampling.BILINEAR)
    return image_tensor(image)


def batch_from_uint8(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(B, S, S, 3) uint8 (as the dataset stores them) -> (B, 3, S, S) float32 in [0, 1]."""
    t = torch.tensor(np.asarray(images))  # a copy: dataset arrays are read-only memory maps
    return t.permute(0, 3, 1, 2).float().div_(255.0)
