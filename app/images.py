"""Untrusted bytes -> a checked PIL image, and PIL images -> PNG bytes.

Only PNG and JPEG are decoded. The pixel count is read from the header and checked before any
pixel is decompressed (the decompression-bomb guard), and so is the shorter side (at least
``MIN_SIDE``); grey, RGBA, palette and 16-bit images are
accepted here and converted later by ``inference.preprocess``.
"""

from __future__ import annotations

import io
import re
import warnings

from PIL import Image, UnidentifiedImageError

from app.errors import PayloadTooLarge, Unprocessable, UnsupportedMediaType
from inference.preprocess import upright

FORMATS = ("PNG", "JPEG")
MIN_SIDE = 16  # pixels: below this an image is refused (a 1x1 image read as a green table with one object)
_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}


def decode_image(data: bytes, max_pixels: int, loc: tuple[str | int, ...] = ("body",),
                 draft_side: int | None = None, request_left: int | None = None) -> Image.Image:
    """Decode a PNG or JPEG fully, turned upright where its EXIF orientation says so
    (``inference.preprocess.upright``), or raise a 413 / 415 / 422 ``ApiError`` naming the problem.

    loc: where the bytes came from, for the 422 detail (``("body", "image", 0)``).
    draft_side: a JPEG whose shorter side is at least twice this is decoded at 1/2, 1/4 or 1/8
        scale (JPEG's own DCT scaling, far cheaper than decoding in full and shrinking), its
        shorter side staying at least ``draft_side``; ``image.info["full_size"]`` then holds the
        (width, height) as sent (upright; a turned image's ``info["exif_orientation"]`` says how).
    request_left: the pixels the request's earlier images left of its budget (413 beyond,
        checked from the header, before decoding).
    """
    if not data:
        raise Unprocessable(loc, "image is empty (0 bytes)")
    if not any(data.startswith(m) for m in _MAGIC):
        raise _not_png_or_jpeg(data, loc)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise PayloadTooLarge(f"image has too many pixels: {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        reason = re.sub(r" ?<[^>]* at 0x[0-9a-f]+>", "", str(e))  # PIL names the buffer object: noise to a client
        raise Unprocessable(loc, f"could not read the image header: {reason}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    if request_left is not None and width * height > request_left:
        raise PayloadTooLarge(f"image is {width}x{height} = {width * height} pixels, more than the "
                              f"{max(request_left, 0)} this request's earlier images left of its budget")
    if width < 1 or height < 1:
        raise Unprocessable(loc, f"image has no pixels ({width}x{height})")
    if min(width, height) < MIN_SIDE:
        raise Unprocessable(loc, f"image is {width}x{height}; the smallest side this service reads is {MIN_SIDE} "
                                 "pixels (a smaller one cannot show a tabletop's objects)")
    if draft_side and image.format == "JPEG":
        scale = 1
        while scale < 8 and min(width, height) // (scale * 2) >= draft_side:
            scale *= 2
        if scale > 1:
            image.draft("RGB", (width // scale, height // scale))
            image.info["full_size"] = (width, height)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise Unprocessable(loc, f"{image.format} data is truncated or corrupt: {e}") from None
    turned = upright(image)
    if turned.size != image.size and "full_size" in turned.info:  # turned a quarter
        turned.info["full_size"] = turned.info["full_size"][::-1]
    return turned


def _not_png_or_jpeg(data: bytes, loc: tuple[str | int, ...]) -> Exception:
    """415 for an image in a format we do not take, 422 for bytes that are no image at all."""
    try:
        fmt = Image.open(io.BytesIO(data)).format  # identification reads the header only
    except Exception:  # noqa: BLE001 - any failure here means "not an image"
        fmt = None
    if fmt:
        return UnsupportedMediaType(f"{fmt} images are not supported; send PNG or JPEG")
    return Unprocessable(loc, f"not a PNG or JPEG image (the data starts with {data[:8]!r})")


def encode_png(rgb: object) -> bytes:
    """(H, W, 3) uint8 array -> PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()
