"""The Open Inference Protocol (KServe v2, as Triton speaks it) over HTTP: tensors in and out.

Requests are JSON, or JSON followed by binary tensor data (the binary tensor extension: the
``Inference-Header-Content-Length`` header gives the JSON's length, each binary input says its
``binary_data_size``; a BYTES tensor's elements are each a 4-byte little-endian length and the
bytes). Inputs the model takes:

- ``image``: BYTES ``[n]``, encoded PNG or JPEG images (any size); or UINT8 ``[H, W, 3]`` /
  ``[n, H, W, 3]``, RGB pixels;
- ``camera`` (optional): BYTES ``[1]`` or ``[n]``, the camera JSON of ``POST /infer``.

Outputs (all by default; ``outputs`` picks some, ``binary_data`` asks for binary): ``scene``
BYTES ``[n]`` (each image's ``/infer`` JSON answer), ``count`` INT32 ``[n]``, ``shape`` and
``color`` INT32 ``[n, N]`` (indices into the names in the model's metadata ``parameters``; -1
for an empty slot), ``position`` FP32 ``[n, N, 3]`` (metres, table frame), ``yaw_deg`` FP32
``[n, N]``, ``confidence`` FP32 ``[n, N]``, ``trust`` FP32 ``[n]``, ``in_world`` BOOL ``[n]``.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from app.errors import Unprocessable

DATATYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "INT32": np.int32, "FP32": np.float32}
OUTPUTS = ("scene", "count", "shape", "color", "position", "yaw_deg", "confidence", "trust", "in_world")


@dataclass(frozen=True)
class InferRequest:
    """A parsed v2 inference request: ``images`` (encoded), ``cameras`` (JSON texts), the
    outputs asked for and whether each comes back binary."""

    id: str | None
    images: list[bytes]
    cameras: list[str]
    outputs: dict[str, bool]


def split_body(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The JSON part of a request body (a dict) and the binary data after it."""
    try:
        n = len(body) if header_length is None else int(header_length)
        if not 0 <= n <= len(body):
            raise ValueError(f"Inference-Header-Content-Length {n} is outside the body of {len(body)} bytes")
        doc = json.loads(body[:n])
    except (ValueError, UnicodeDecodeError) as e:
        raise Unprocessable(("body",), f"not a v2 inference request: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise Unprocessable(("body", "inputs"), "a v2 inference request has a list of 'inputs'")
    return doc, body[n:]


def byte_elements(raw: bytes, where: tuple) -> list[bytes]:
    """A binary BYTES tensor -> its elements (each a 4-byte little-endian length, then the bytes)."""
    out, i = [], 0
    while i < len(raw):
        if i + 4 > len(raw):
            raise Unprocessable(where, "a BYTES element's length is cut off")
        (n,) = struct.unpack_from("<I", raw, i)
        if i + 4 + n > len(raw):
            raise Unprocessable(where, f"a BYTES element of {n} bytes runs past the data")
        out.append(raw[i + 4:i + 4 + n])
        i += 4 + n
    return out


def tensor_input(spec: dict, binary: bytes, offset: int, k: int) -> tuple[Any, int]:
    """One input's data (a list of bytes for BYTES, else a numpy array) and the binary offset after it."""
    where = ("body", "inputs", k)
    dtype, shape = spec.get("datatype"), spec.get("shape")
    if dtype not in ("BYTES", "UINT8") or not isinstance(shape, list) or \
            not all(isinstance(d, int) and d >= 0 for d in shape):
        raise Unprocessable(where, "each input needs a datatype (BYTES or UINT8) and a shape (a list of integers >= 0)")
    size = (spec.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise Unprocessable(where, f"binary_data_size {size} runs past the binary data")
        raw, offset = binary[offset:offset + size], offset + size
        data = byte_elements(raw, where) if dtype == "BYTES" else np.frombuffer(raw, np.uint8)
    else:
        values = spec.get("data")
        if not isinstance(values, list):
            raise Unprocessable(where, "an input without binary data needs 'data'")
        data = [str(v).encode() for v in np.ravel(np.array(values, dtype=object))] if dtype == "BYTES" \
            else uint8_values(values, where)
    count = int(np.prod(shape)) if shape else 1
    if (len(data) if dtype == "BYTES" else data.size) != count:
        raise Unprocessable(where, f"shape {shape} holds {count} elements; the data holds "
                                   f"{len(data) if dtype == 'BYTES' else data.size}")
    return (data if dtype == "BYTES" else data.reshape(shape)), offset


def uint8_values(values: list, where: tuple) -> np.ndarray:
    """JSON ``data`` of a UINT8 tensor -> a flat uint8 array (values clipped to 0..255); 422 for
    anything but numbers in (nested) lists of one depth."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        raise Unprocessable(where, "UINT8 'data' is a list of numbers (flat, or nested evenly)") from None
    if not np.isfinite(array).all():
        raise Unprocessable(where, "UINT8 'data' holds a number that is not finite")
    return array.clip(0, 255).round().astype(np.uint8).ravel()


def pixels_to_png(pixels: np.ndarray, where: tuple) -> list[bytes]:
    """UINT8 [H, W, 3] or [n, H, W, 3] -> PNG bytes per image."""
    if pixels.ndim == 3:
        pixels = pixels[None]
    if pixels.ndim != 4 or pixels.shape[-1] != 3 or 0 in pixels.shape:
        raise Unprocessable(where, f"a UINT8 image is [H, W, 3] or [n, H, W, 3] with at least one pixel, "
                                   f"got {list(pixels.shape)}")
    out = []
    for p in pixels:
        buf = io.BytesIO()
        Image.fromarray(p, "RGB").save(buf, format="PNG", compress_level=1)
        out.append(buf.getvalue())
    return out


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """A v2 request body -> ``InferRequest`` (422 naming the part that is wrong)."""
    doc, binary = split_body(body, header_length)
    images: list[bytes] | None = None
    cameras: list[str] = []
    offset = 0
    for k, spec in enumerate(doc["inputs"]):
        if not isinstance(spec, dict) or spec.get("name") not in ("image", "camera"):
            raise Unprocessable(("body", "inputs", k), "inputs are 'image' and optionally 'camera'")
        data, offset = tensor_input(spec, binary, offset, k)
        if spec["name"] == "image":
            images = data if isinstance(data, list) else pixels_to_png(data, ("body", "inputs", k))
        elif isinstance(data, list):
            cameras = [d.decode("utf-8", "replace") for d in data]
        else:
            raise Unprocessable(("body", "inputs", k), "'camera' is BYTES: the camera JSON")
    if not images:
        raise Unprocessable(("body", "inputs"), "no 'image' input")
    default_binary = bool((doc.get("parameters") or {}).get("binary_data_output", False))
    asked = doc.get("outputs")
    if asked is None:
        outputs = {name: default_binary for name in OUTPUTS}
    else:
        if not isinstance(asked, list) or any(not isinstance(o, dict) or o.get("name") not in OUTPUTS for o in asked):
            raise Unprocessable(("body", "outputs"), f"outputs are named from {list(OUTPUTS)}")
        outputs = {o["name"]: bool((o.get("parameters") or {}).get("binary_data", default_binary)) for o in asked}
    request_id = doc.get("id")
    return InferRequest(None if request_id is None else str(request_id), images, cameras, outputs)


def output_tensors(answers: list[dict], shapes: list[str], colors: list[str], slots: int) -> dict[str, tuple[str, np.ndarray | list[bytes]]]:
    """``/infer`` answers (as dicts) -> each output's datatype and data."""
    n = len(answers)
    shape = np.full((n, slots), -1, np.int32)
    color = np.full((n, slots), -1, np.int32)
    position = np.zeros((n, slots, 3), np.float32)
    yaw = np.zeros((n, slots), np.float32)
    conf = np.zeros((n, slots), np.float32)
    for i, a in enumerate(answers):
        for t, o in enumerate(a["objects"][:slots]):
            shape[i, t], color[i, t] = shapes.index(o["shape"]), colors.index(o["color"])
            position[i, t] = [o["position"][k] for k in "xyz"]
            yaw[i, t], conf[i, t] = o["yaw_deg"], o["confidence"]
    return {
        "scene": ("BYTES", [json.dumps(a).encode() for a in answers]),
        "count": ("INT32", np.array([a["count"] for a in answers], np.int32)),
        "shape": ("INT32", shape), "color": ("INT32", color), "position": ("FP32", position),
        "yaw_deg": ("FP32", yaw), "confidence": ("FP32", conf),
        "trust": ("FP32", np.array([a["quality"]["trust"] for a in answers], np.float32)),
        "in_world": ("BOOL", np.array([a["quality"]["in_world"] for a in answers], np.bool_)),
    }


def encode_response(model: str, version: str, request_id: str | None,
                    tensors: dict[str, tuple[str, Any]], outputs: dict[str, bool]) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it (else None)."""
    described, binary = [], []
    for name, as_binary in outputs.items():
        dtype, data = tensors[name]
        shape = [len(data)] if dtype == "BYTES" else list(data.shape)
        out: dict[str, Any] = {"name": name, "datatype": dtype, "shape": shape}
        if as_binary:
            raw = b"".join(struct.pack("<I", len(d)) + d for d in data) if dtype == "BYTES" \
                else np.ascontiguousarray(data, dtype=np.dtype(DATATYPES[dtype]).newbyteorder("<")).tobytes()
            out["parameters"] = {"binary_data_size": len(raw)}
            binary.append(raw)
        else:
            out["data"] = [d.decode() for d in data] if dtype == "BYTES" else data.ravel().tolist()
        described.append(out)
    doc: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": described}
    if request_id is not None:
        doc["id"] = request_id
    head = json.dumps(doc).encode()
    return (head + b"".join(binary), len(head)) if binary else (head, None)


def metadata(model: str, version: str, shapes: list[str], colors: list[str], slots: int) -> dict:
    """GET /v2/models/{model}: inputs and outputs with datatypes and shapes (-1: any size)."""
    return {
        "name": model, "versions": [version], "platform": "pytorch",
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]},
                   {"name": "camera", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "scene", "datatype": "BYTES", "shape": [-1]},
                    {"name": "count", "datatype": "INT32", "shape": [-1]},
                    {"name": "shape", "datatype": "INT32", "shape": [-1, slots]},
                    {"name": "color", "datatype": "INT32", "shape": [-1, slots]},
                    {"name": "position", "datatype": "FP32", "shape": [-1, slots, 3]},
                    {"name": "yaw_deg", "datatype": "FP32", "shape": [-1, slots]},
                    {"name": "confidence", "datatype": "FP32", "shape": [-1, slots]},
                    {"name": "trust", "datatype": "FP32", "shape": [-1]},
                    {"name": "in_world", "datatype": "BOOL", "shape": [-1]}],
        "parameters": {"shapes": ",".join(shapes), "colors": ",".join(colors),
                       "image_input": "BYTES [n] encoded PNG/JPEG, or UINT8 [H, W, 3] / [n, H, W, 3] RGB"},
    }
