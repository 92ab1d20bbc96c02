"""Hostile and broken clients: answers stay bounded JSON and never count as server errors."""

from __future__ import annotations

import asyncio
import io

import httpx
import pytest
from PIL import Image
from apiserver import LiveServer, make_dev_weights, settings_for
from starlette.requests import Request

from app.deps import read_images
from app.errors import ClientGone


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer(settings_for(make_dev_weights(tmp_path_factory.mktemp("w")))) as s:
        yield s


def test_client_that_hangs_up_mid_upload_is_a_499_not_a_500(tmp_path):
    async def receive():
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "POST", "path": "/infer", "query_string": b"",
             "headers": [(b"content-type", b"image/png"), (b"content-length", b"1000")]}
    with pytest.raises(ClientGone) as caught:
        asyncio.run(read_images(Request(scope, receive), settings_for(tmp_path / "none.safetensors")))
    assert caught.value.status_code == 499


def test_metrics_method_label_stays_bounded_under_unusual_methods(server):
    unusual = ("PROPFIND", "MKCOL", "LOCK", "SEARCH", "PURGE", "REPORT")  # parsed by the HTTP stack, served by no route
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for method in unusual:
            http.request(method, "/healthz")
        text = http.get("/metrics").text
    assert not any(f'method="{m}"' in text for m in unusual)
    assert 'method="other"' in text


def test_error_body_does_not_echo_a_huge_field(server):
    scene = {"objects": [{"shape": "x" * 200_000, "color": "red", "position": {"x": 0, "y": 0}}]}
    r = httpx.post(server.url + "/render", json=scene, timeout=30)
    assert r.status_code == 422 and len(r.content) < 2000


def test_readyz_names_no_absolute_path_when_the_weights_are_missing(tmp_path):
    with LiveServer(settings_for(tmp_path / "deep" / "missing.safetensors"), wait_ready=False) as s:
        for _ in range(100):
            r = httpx.get(s.url + "/readyz", timeout=10)
            if r.json()["status"] == "failed":
                break
            asyncio.run(asyncio.sleep(0.05))
    assert r.status_code == 503 and r.json()["status"] == "failed"
    assert str(tmp_path) not in r.text and "missing.safetensors" in r.text


def test_readyz_tells_why_only_to_holders_of_the_api_key(tmp_path):
    """With an API key set, /readyz stays open (probes send no credentials) but says only
    'failed' to callers without the key; with the key it says why."""
    with LiveServer(settings_for(tmp_path / "missing.safetensors", api_key="s3cret"), wait_ready=False) as s:
        for _ in range(100):
            r = httpx.get(s.url + "/readyz", timeout=10)
            if r.json()["status"] == "failed":
                break
            asyncio.run(asyncio.sleep(0.05))
        keyed = httpx.get(s.url + "/readyz", headers={"authorization": "Bearer s3cret"}, timeout=10)
        wrong = httpx.get(s.url + "/readyz", headers={"authorization": "Bearer nope"}, timeout=10)
    assert r.status_code == 503 and r.json() == {"status": "failed", "detail": None}
    assert wrong.json()["detail"] is None
    assert keyed.status_code == 503 and "missing.safetensors" in keyed.json()["detail"]


def test_a_request_has_a_pixel_budget_across_its_images(tmp_path):
    weights = make_dev_weights(tmp_path)
    png = io.BytesIO()
    Image.new("RGB", (300, 200), (120, 120, 120)).save(png, format="PNG")
    files = [("image", (f"{i}.png", png.getvalue(), "image/png")) for i in range(3)]
    with LiveServer(settings_for(weights, max_pixels=100_000, max_request_pixels=150_000, warmup=False)) as s, \
            httpx.Client(base_url=s.url, timeout=30) as c:
        assert c.post("/infer", files=files[:2]).status_code == 200  # 120 000 pixels
        r = c.post("/infer", files=files)  # 180 000 pixels: each image alone would pass
        assert r.status_code == 413 and "budget" in r.json()["detail"]
        assert c.get("/v1/limits").json()["max_request_pixels"] == 150_000


def test_a_large_16_bit_png_is_read_without_float_copies():
    import numpy as np

    from inference.preprocess import to_rgb

    a = (np.arange(512 * 512, dtype=np.uint32).reshape(512, 512) * 97 % 65536).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        grey = np.asarray(to_rgb(im))[..., 0].astype(int)
    assert np.abs(grey - np.round(a / 65535 * 255 - 0.5).clip(0)).max() <= 1  # the high byte, as the float path


# ---------------------------------------------------------------- refinement: admitted by work, in its own lane


@pytest.fixture(scope="module")
def refine_server(tmp_path_factory):
    weights = make_dev_weights(tmp_path_factory.mktemp("refine"))
    with LiveServer(settings_for(weights, max_refine_steps=400, max_refine_queue=800)) as s:
        yield s


def _png() -> bytes:
    from apiserver import table_png

    return table_png(64, 64)


def test_refinement_is_admitted_by_the_work_it_asks_for(refine_server):
    with httpx.Client(base_url=refine_server.url, timeout=60) as c:
        files = [("image", (f"{i}.png", _png(), "image/png")) for i in range(3)]
        r = c.post("/infer?refine=300", files=files)  # 900 steps x images > 800
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        assert "refinement queue" in r.json()["detail"]
        assert c.post("/infer?refine=2", files=files).status_code == 200  # 6: fits


def test_refinement_is_refused_when_the_queued_work_would_take_too_long(tmp_path):
    """Admission by time as well as by steps: with a refinement running, a second one whose wait
    (queued steps x the measured step time) exceeds AIRSCENE_MAX_REFINE_WAIT_S gets a 503; an
    idle lane always takes a request."""
    import threading
    import time

    weights = make_dev_weights(tmp_path)
    with LiveServer(settings_for(weights, max_refine_steps=400, max_refine_queue=800, max_refine_wait_s=0.5)) as s:
        first: dict[str, int] = {}

        def refined():
            with httpx.Client(base_url=s.url, timeout=120) as c:
                first["status"] = c.post("/infer?refine=60", content=_png(), headers={"content-type": "image/png"}).status_code

        worker = threading.Thread(target=refined)
        worker.start()
        deadline = time.monotonic() + 30
        while s.service._refine_queued == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        with httpx.Client(base_url=s.url, timeout=60) as c:
            r = c.post("/infer?refine=5", content=_png(), headers={"content-type": "image/png"})
        worker.join()
    assert first["status"] == 200
    assert r.status_code == 503 and "AIRSCENE_MAX_REFINE_WAIT_S" in r.json()["detail"] and int(r.headers["retry-after"]) >= 1


def test_plain_inference_does_not_wait_behind_refinement(refine_server):
    import threading
    import time

    done: dict[str, float] = {}

    def refined():
        with httpx.Client(base_url=refine_server.url, timeout=120) as c:
            r = c.post("/infer?refine=20", content=_png(), headers={"content-type": "image/png"})
            assert r.status_code == 200
            done["refined"] = time.monotonic()

    worker = threading.Thread(target=refined)
    worker.start()
    with httpx.Client(base_url=refine_server.url, timeout=60) as c:
        deadline = time.monotonic() + 30
        while refine_server.service._refine_queued == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # the refinement is admitted and running
        for _ in range(5):
            assert c.post("/infer", content=_png(), headers={"content-type": "image/png"}).status_code == 200
        done["plain"] = time.monotonic()
    worker.join()
    assert done["plain"] < done["refined"]


def test_refinement_runs_in_a_worker_process_and_survives_its_death(refine_server):
    """Refinement runs in a process of its own (PyTorch3D's CPU rasteriser holds the GIL: in the
    server's process it would stall the event loop); a killed worker is a 503 with Retry-After
    at worst, never a 500, and the next refinement gets a new worker."""
    import os
    import signal
    import time

    lane = refine_server.service.refine_lane
    with httpx.Client(base_url=refine_server.url, timeout=120) as c:
        assert c.post("/infer?refine=2", content=_png(), headers={"content-type": "image/png"}).status_code == 200
        (worker,) = lane.pids()
        assert worker != os.getpid()
        os.kill(worker, signal.SIGKILL)
        statuses = []
        for _ in range(5):
            r = c.post("/infer?refine=2", content=_png(), headers={"content-type": "image/png"})
            statuses.append(r.status_code)
            assert r.status_code == 200 or (r.status_code == 503 and "retry-after" in r.headers), r.text
            if r.status_code == 200:
                break
            time.sleep(0.5)
        assert statuses[-1] == 200 and lane.pids() and lane.pids()[0] != worker
        assert "airscene_refine_worker_ready 1.0" in c.get("/metrics").text
        assert c.post("/infer", content=_png(), headers={"content-type": "image/png"}).status_code == 200
        assert 'status="500"' not in c.get("/metrics").text


def test_with_warm_up_the_refinement_worker_starts_with_the_service(tmp_path):
    import os

    with LiveServer(settings_for(make_dev_weights(tmp_path), warmup=True)) as s:
        lane = s.service.refine_lane
        assert lane.started  # before any refinement was asked for
        assert lane.start().result(timeout=120) not in (None, os.getpid())
        with httpx.Client(base_url=s.url, timeout=30) as c:
            assert "airscene_refine_worker_ready 1.0" in c.get("/metrics").text
    with LiveServer(settings_for(make_dev_weights(tmp_path), warmup=True, max_refine_steps=0)) as s:
        assert not s.service.refine_lane.started  # refinement off: no worker


def test_refinement_gives_way_to_plain_images_in_flight_for_a_bounded_time(refine_server):
    """The gate the refinement worker asks before each step: no wait while no plain image is in
    flight, a wait of up to ``most_s`` while one is, and an immediate True once the job's stop
    flag is set (its client has gone); the server's count of plain images in flight goes back
    to 0 after plain requests, answered or refused."""
    import threading
    import time

    from app.refine_worker import gate

    plain, stop = [0], threading.Event()
    t = time.monotonic()
    assert gate(lambda: plain[0], stop.is_set, most_s=5.0) is False
    assert time.monotonic() - t < 0.5
    plain[0] = 1
    t = time.monotonic()
    assert gate(lambda: plain[0], stop.is_set, most_s=0.3) is False
    assert 0.3 <= time.monotonic() - t < 3.0  # gave way, then went on: refinement never starves
    threading.Timer(0.1, stop.set).start()
    t = time.monotonic()
    assert gate(lambda: plain[0], stop.is_set, most_s=5.0) is True
    assert time.monotonic() - t < 3.0
    lane = refine_server.service.refine_lane
    with httpx.Client(base_url=refine_server.url, timeout=60) as c:
        assert c.post("/infer", content=_png(), headers={"content-type": "image/png"}).status_code == 200
        assert c.post("/infer", content=b"not an image", headers={"content-type": "image/png"}).status_code == 422
    assert lane.plain_in_flight == 0


def test_refinement_stops_when_its_client_hangs_up(refine_server):
    import socket
    import time

    body = _png()
    head = (f"POST /infer?refine=400 HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", refine_server.port))
    sock.sendall(head + body)
    service = refine_server.service
    deadline = time.monotonic() + 30
    while service._refine_queued == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert service._refine_queued == 400
    started = time.monotonic()
    sock.close()  # 400 steps take far longer than the seconds allowed below
    while service._refine_queued and time.monotonic() - started < 5:
        time.sleep(0.05)
    assert service._refine_queued == 0  # counted until the lane's thread has stopped working on it
    with httpx.Client(base_url=refine_server.url, timeout=30) as c:
        assert c.get("/healthz").status_code == 200
        text = c.get("/metrics").text
    assert 'status="500"' not in text


def test_event_loop_lag_is_measured_and_a_blocked_loop_shows_in_it(tmp_path):
    """``airscene_event_loop_lag_seconds``: a loop held up for 0.2 s is observed as a lag of at
    least that; a free loop as lags below 100 ms."""
    import time

    from app.metrics import Metrics
    from app.service import ModelService

    metrics = Metrics()
    service = ModelService(settings_for(make_dev_weights(tmp_path)), metrics)

    async def trial() -> None:
        watcher = asyncio.create_task(service._watch_loop_lag(0.01))
        await asyncio.sleep(0.1)  # free: about ten timers
        time.sleep(0.2)  # the loop held up
        await asyncio.sleep(0.05)
        watcher.cancel()

    asyncio.run(trial())
    text = metrics.render().decode()
    count = float(text.split("airscene_event_loop_lag_seconds_count ")[1].split()[0])
    late = count - float(text.split('airscene_event_loop_lag_seconds_bucket{le="0.1"} ')[1].split()[0])
    total = float(text.split("airscene_event_loop_lag_seconds_sum ")[1].split()[0])
    assert count >= 5 and late == 1 and total >= 0.19


def test_a_cancelled_refinement_job_does_not_break_the_lanes_reader():
    """The lane's reader thread settles each job when its answer arrives; a job cancelled
    meanwhile is skipped instead of raising (which would end the reader and strand every later job)."""
    from concurrent.futures import Future

    from app.refine_lane import _settle

    cancelled, pending, failing = Future(), Future(), Future()
    assert cancelled.cancel()
    _settle(cancelled, result=("results", 1.0))
    _settle(pending, result=("results", 1.0))
    _settle(failing, error=RuntimeError("boom"))
    assert cancelled.cancelled() and pending.result() == ("results", 1.0)
    assert isinstance(failing.exception(), RuntimeError)
