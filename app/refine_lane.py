"""Test-time refinement in a worker process of its own, at a lower CPU priority.

Refinement renders through PyTorch3D's CPU rasteriser, whose calls hold Python's GIL for up to
about a second. In a thread of the server's process that stalls everything else the process
does: the event loop (health probes, admission, every answer) and the plain-inference thread.
In a process of its own it holds only its own GIL, and with a higher ``nice`` value the kernel
gives the server's threads the CPU first, so plain inference keeps its pace while refinement
uses what is left.

The worker (``app.refine_worker``) loads the same weights (``Engine.load``) when the service
has loaded its own (with warm-up on) or when the first refinement arrives, and then serves one
request at a time. Two values live in shared memory, written by the server's
event loop and read by the worker before each refinement step:

- ``plain``: plain ``/infer`` images in flight: while there are any, the worker waits (at most
  ``yield_s``) so that plain inference goes first (``gate``);
- ``stops``: one flag per job slot: set when a job's client hangs up, and the job ends at its
  next step.

If the worker dies (killed for memory, say), its requests get a 503 and the next refinement
starts a new one.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from app.engine import InferItem
from app.refine_worker import gate, init_worker, ping, run

__all__ = ["BrokenProcessPool", "RefineLane", "gate"]

SLOTS = 4096  # job slots for stop flags: more than the jobs that can be admitted at once


class RefineLane:
    """The refinement worker as seen from the server: ``submit`` a job, ``stop`` it, ``plain``
    (the count of plain images in flight the worker gives way to)."""

    def __init__(self, weights: str, device: str, mirror: bool | None, threads: int, niceness: int,
                 yield_s: float, on_ready: Callable[[bool], object] = lambda ready: None) -> None:
        """``on_ready``: called with True when a worker has loaded its engine, False when one
        failed to or was dropped (from the pool's own thread)."""
        self._ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch state
        self._args = (str(weights), device, mirror, threads, niceness)
        self.yield_s = yield_s
        self.plain = self._ctx.Value("i", 0, lock=False)  # written by the event loop only
        self._stops = self._ctx.Array("b", SLOTS, lock=False)
        self._next = 0
        self._pool: ProcessPoolExecutor | None = None
        self._on_ready = on_ready

    def start(self) -> Future:
        """Start the worker now rather than at the first refinement: a future of its process id."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(1, mp_context=self._ctx, initializer=init_worker,
                                             initargs=(*self._args, self.plain, self._stops, os.getpid()))
        started = self._pool.submit(ping)
        started.add_done_callback(lambda f: self._on_ready(not f.cancelled() and f.exception() is None))
        return started

    def submit(self, items: list[InferItem]) -> tuple[int, Future]:
        """Queue a job: its slot (for ``stop``) and a future of (results, seconds)."""
        if self._pool is None:
            self.start()
        assert self._pool is not None
        slot, self._next = self._next, (self._next + 1) % SLOTS
        self._stops[slot] = 0
        try:
            return slot, self._pool.submit(run, slot, items, self.yield_s)
        except BrokenProcessPool:  # the worker died since the last job: this one goes to a new one
            self.restart()
            return self.submit(items)

    def stop(self, slot: int) -> None:
        """End the job in ``slot`` at its next step (or before it starts)."""
        self._stops[slot] = 1

    def restart(self) -> None:
        """After the worker died: drop it; the next ``submit`` starts a new one."""
        pool, self._pool = self._pool, None
        self._on_ready(False)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        """Stop every job at its next step and let the worker exit."""
        for i in range(SLOTS):
            self._stops[i] = 1
        self.restart()

    @property
    def started(self) -> bool:
        return self._pool is not None

    def pids(self) -> list[int]:
        """The worker's process id, when one is running."""
        return [] if self._pool is None else list(self._pool._processes or {})
