"""The refinement worker's side of ``app.refine_lane``: what runs in the worker process.

This module imports nothing heavy at its top, so that a spawned worker lowers its CPU
priority (``init_worker``) before it imports torch and PyTorch3D and loads the weights: the
seconds that takes are the server's idle CPU's, not its requests'.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

_engine: Any = None  # app.engine.Engine, loaded by init_worker
_plain: Any = None
_stops: Any = None


def gate(plain, stops, slot: int, most_s: float) -> bool:
    """Asked before each refinement step: waits while plain images are in flight (``plain.value``
    > 0, at most ``most_s``), so that plain inference goes first; True when the job must end
    (its stop flag is set)."""
    until = time.monotonic() + most_s
    while plain.value > 0 and not stops[slot] and time.monotonic() < until:
        time.sleep(0.005)
    return bool(stops[slot])


def _exit_with_parent(parent: int) -> None:
    """The worker's watchdog: it ends when the server's process has gone (killed without a shutdown)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def init_worker(weights: str, device: str, mirror: bool | None, threads: int, niceness: int,
                plain, stops, parent: int) -> None:
    """The worker's initializer: lower priority, then load the engine."""
    global _engine, _plain, _stops
    os.nice(niceness)  # first: the imports below and torch's threads run at it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server; it stops the worker
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    import torch

    from app.engine import Engine

    torch.set_num_threads(threads)
    _plain, _stops = plain, stops
    _engine = Engine.load(weights, device, mirror)


def ping() -> int:
    """A job that only starts the worker: its process id."""
    return os.getpid()


def run(slot: int, items: list, yield_s: float) -> tuple[list, float]:
    """In the worker: refine ``items`` (``app.engine.InferItem``); their results
    (``InferResult``) and the seconds it took, gate waits included."""
    assert _engine is not None, "the worker's initializer loads the engine"
    t = time.perf_counter()
    results = _engine.infer_batch(items, lambda: gate(_plain, _stops, slot, yield_s))
    return results, time.perf_counter() - t
