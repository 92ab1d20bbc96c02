"""How fast is /infer over HTTP, beside the same model called in-process?

    python -m bench.serve [--weights W] [--requests 400] [--concurrency 1,4,16]
    python -m bench.serve --frame 640x480 --jpeg        # a camera-sized JPEG, as a robot sends
    python -m bench.serve --device cuda --concurrency 1,16,64 --images 16 --max-batch 256   # a GPU, batched

Starts the service in a child process (uvicorn, as ``make serve`` does), renders one PNG of a
prior scene at the network's size (or, with ``--frame WxH``, at that size from the world's
camera, as a PNG or with ``--jpeg`` a quality-90 JPEG), and sends it to /infer from ``concurrency`` keep-alive connections at once
(a minimal HTTP/1.1 client on asyncio, so the load generator costs little CPU); with ``--images K``
each request is a multipart form of K copies (a client batching its frames). Before that it runs the
same pipeline in this process without HTTP: decode + preprocess + forward, batch 1 and batched.
Prints p50/p99 latency, requests/s and images/s per concurrency and the HTTP/in-process ratios.
``--device cuda`` runs both the service and the in-process pipeline on the GPU.

Load generator and server share this machine's cores: on a small machine that is a real cost,
and the reason the throughput ratio is below 1.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch
from PIL import Image

from app.config import DEFAULT_WEIGHTS, Settings
from app.engine import Engine
from app.images import decode_image, encode_png
from renderer.prior import sample_scenes
from renderer.render import render
from renderer.world import World


def scene_image(world: World, height: int, width: int, jpeg: bool = False, seed: int = 3) -> bytes:
    """One prior scene with 2 objects seen by the world's camera, rendered at 2x and box-filtered
    (as the training data is), as PNG or quality-90 JPEG bytes."""
    scene = sample_scenes(world, 1, seed=seed, counts=2)
    with torch.no_grad():
        img = render(scene, world, "hard", height * 2, width * 2).permute(0, 3, 1, 2)
        img = torch.nn.functional.avg_pool2d(img, 2).permute(0, 2, 3, 1)[0]
    rgb = (img * 255).round().to(torch.uint8).numpy()
    if not jpeg:
        return encode_png(rgb)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


# ---------------------------------------------------------------- HTTP load


def mime(body: bytes) -> str:
    return "image/jpeg" if body.startswith(b"\xff\xd8") else "image/png"


BOUNDARY = "airscene-bench-boundary"


def request_body(image: bytes, copies: int) -> tuple[str, bytes]:
    """(content type, body) of one /infer request: the image itself, or a multipart form with
    ``copies`` parts named ``image``."""
    if copies == 1:
        return mime(image), image
    part = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"frame\"\r\n"
            f"Content-Type: {mime(image)}\r\n\r\n").encode() + image + b"\r\n"
    return f"multipart/form-data; boundary={BOUNDARY}", part * copies + f"--{BOUNDARY}--\r\n".encode()


async def _one_connection(port: int, request: tuple[str, bytes], count: int, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    content_type, body = request
    head = (f"POST /infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    try:
        for _ in range(count):
            t = time.perf_counter()
            writer.write(head + body)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t)
            if b" 200 " not in status_line:
                raise RuntimeError(f"/infer answered {status_line!r}")
    finally:
        writer.close()


async def http_load(port: int, request: tuple[str, bytes], concurrency: int,
                    requests: int) -> tuple[list[float], float]:
    """-> (latencies in seconds, wall time in seconds) for ``requests`` (content type, body)
    requests spread over the connections."""
    latencies: list[float] = []
    per = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]
    t = time.perf_counter()
    await asyncio.gather(*(_one_connection(port, request, n, latencies) for n in per))
    return latencies, time.perf_counter() - t


def start_server(weights: Path, threads: int, max_batch: int, max_wait_ms: float,
                 device: str = "cpu", mirror: bool | None = None) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRSCENE_")}
    env.update(AIRSCENE_WEIGHTS=str(weights), AIRSCENE_DEVICE=device, AIRSCENE_THREADS=str(threads),
               AIRSCENE_MAX_BATCH=str(max_batch), AIRSCENE_MAX_WAIT_MS=str(max_wait_ms),
               AIRSCENE_MAX_QUEUE="1024")
    if mirror is not None:
        env["AIRSCENE_MIRROR"] = str(mirror).lower()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port),
                             "--no-access-log", "--log-level", "warning"], env=env)
    end = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return proc, port
        except httpx.TransportError:
            pass
        if time.monotonic() > end:
            proc.terminate()
            raise RuntimeError("the server was not ready after 120 s")
        time.sleep(0.2)


# ---------------------------------------------------------------- in-process


def in_process(engine: Engine, body: bytes, batch: int, images: int, max_pixels: int) -> tuple[list[float], float]:
    """Decode + preprocess + forward, ``batch`` images at a time -> (per-batch latencies, wall)."""
    latencies = []
    t0 = time.perf_counter()
    for _ in range(max(1, images // batch)):
        t = time.perf_counter()
        items = []
        for _ in range(batch):  # as the service does: a reduced JPEG decode where it can, at the full size's camera
            image = decode_image(body, max_pixels, draft_side=3 * engine.image_size)
            width, height = image.info.get("full_size", image.size)
            items.append(engine.preprocess(image, full_size=(height, width)))
        engine.infer_batch(items)
        if engine.device.type == "cuda":
            torch.cuda.synchronize()
        latencies.append(time.perf_counter() - t)
    return latencies, time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="weights .safetensors")
    parser.add_argument("--requests", type=int, default=400, help="requests per concurrency level")
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated connection counts")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the service's default)")
    parser.add_argument("--max-batch", type=int, default=16, help="AIRSCENE_MAX_BATCH")
    parser.add_argument("--max-wait-ms", type=float, default=2.0, help="AIRSCENE_MAX_WAIT_MS")
    parser.add_argument("--frame", default="", help="WxH: send an image of this size (default: the network's size)")
    parser.add_argument("--jpeg", action="store_true", help="send it as a quality-90 JPEG instead of a PNG")
    parser.add_argument("--images", type=int, default=1, help="images per request (> 1: a multipart form; at most "
                                                               "the service's AIRSCENE_MAX_IMAGES, 16)")
    parser.add_argument("--device", default="cpu", help="'cpu' or 'cuda' (or 'cuda:N'): the service's and the "
                                                        "in-process pipeline's device")
    parser.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=None,
                        help="AIRSCENE_MIRROR: read each image with its mirror image or not (default: as the weights "
                             "say), for the service and the in-process pipeline alike")
    args = parser.parse_args()

    settings = Settings(_env_file=None, weights=args.weights, threads=args.threads)  # type: ignore[call-arg]
    threads = settings.torch_threads()
    torch.set_num_threads(threads)
    engine = Engine.load(args.weights, args.device, args.mirror)
    width, height = (int(v) for v in args.frame.split("x")) if args.frame else (engine.image_size,) * 2
    body = scene_image(engine.world, height, width, args.jpeg)
    request = request_body(body, args.images)
    levels = [int(c) for c in args.concurrency.split(",")]
    device = str(engine.device) + (f" ({torch.cuda.get_device_name(engine.device)})" if engine.device.type == "cuda" else "")
    print(f"# bench.serve: {args.weights.name} ({engine.version}), {len(body)}-byte {width}x{height} "
          f"{'JPEG' if args.jpeg else 'PNG'} x {args.images} per request, {device}, {threads} torch thread(s), "
          f"{os.cpu_count()} cores, max_batch {args.max_batch}, max_wait {args.max_wait_ms} ms, "
          f"mirror reading {'on' if engine.predictor.calibration.mirror else 'off'}")

    # in-process first (the server is not running yet, so nothing competes for the cores)
    engine.warmup(args.max_batch)
    lat1, wall1 = in_process(engine, body, 1, args.requests, settings.max_pixels)
    latb, wallb = in_process(engine, body, args.max_batch, args.requests, settings.max_pixels)
    ips1 = len(lat1) / wall1
    ipsb = len(latb) * args.max_batch / wallb
    print(f"in-process batch 1:  p50 {pct(lat1, 50) * 1e3:6.2f} ms  p99 {pct(lat1, 99) * 1e3:6.2f} ms  "
          f"{ips1:7.1f} images/s")
    print(f"in-process batch {args.max_batch}: p50 {pct(latb, 50) * 1e3:6.2f} ms/batch             "
          f"{ipsb:7.1f} images/s")

    proc, port = start_server(args.weights, threads, args.max_batch, args.max_wait_ms, args.device, args.mirror)
    try:
        asyncio.run(http_load(port, request, 4, 50))  # warm connections, caches and the batcher
        print(f"{'HTTP':>6} {'conc':>4} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'images/s':>9} {'/ in-proc b1':>13} "
              f"{'/ in-proc b' + str(args.max_batch):>14}")
        for c in levels:
            lat, wall = asyncio.run(http_load(port, request, c, args.requests))
            rps = len(lat) / wall
            ips = rps * args.images
            print(f"{'':>6} {c:>4} {statistics.median(lat) * 1e3:8.2f} {pct(lat, 99) * 1e3:8.2f} {rps:8.1f} {ips:9.1f} "
                  f"{ips / ips1:13.2f} {ips / ipsb:14.2f}")
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        batches = _metric(metrics, "airscene_infer_batch_size_count")
        images = _metric(metrics, "airscene_infer_batch_size_sum")
        print("server-side /infer latency (histogram): " + _histogram(metrics, "airscene_http_request_duration_seconds",
                                                                      'route="/infer"'))
        queue = _metric(metrics, "airscene_infer_queue_seconds_sum") / max(images, 1)
        compute = _metric(metrics, "airscene_infer_compute_seconds_sum") / max(batches, 1)
        print(f"server: {int(images)} images in {int(batches)} forward passes (mean batch "
              f"{images / max(batches, 1):.2f}); mean wait for a batch {queue * 1e3:.2f} ms, "
              f"mean batch compute {compute * 1e3:.2f} ms")
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:  # the numbers are printed; a slow shutdown is no reason to lose them
            print("the server had not stopped 15 s after SIGTERM: killed")
            proc.kill()
            proc.wait()


def _histogram(text: str, name: str, label: str) -> str:
    """'<= 5 ms: 40%, <= 10 ms: 90%, ...' from a Prometheus histogram's cumulative buckets."""
    buckets = []
    for line in io.StringIO(text):
        if line.startswith(name + "_bucket{") and label in line:
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float(le), float(line.split()[-1])))
    total = max((c for _, c in buckets), default=0) or 1
    return ", ".join(f"<= {le * 1e3:g} ms: {c / total:.0%}" for le, c in sorted(buckets) if le != float("inf")
                     and 0 < c / total)


def _metric(text: str, name: str) -> float:
    for line in io.StringIO(text):
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


if __name__ == "__main__":
    main()
