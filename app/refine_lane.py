"""Test-time refinement in a worker process of its own, at a lower CPU priority.

Refinement renders through PyTorch3D's CPU rasteriser, whose calls hold Python's GIL for up to
about a second. In a thread of the server's process that stalls everything else the process
does: the event loop (health probes, admission, every answer) and the plain-inference thread.
In a process of its own (``app.refine_worker``) it holds only its own GIL, and with a higher
``nice`` value the kernel gives the server's threads the CPU first, so plain inference keeps its
pace while refinement uses what is left.

The worker loads the same weights when the service has loaded its own (with warm-up on) or when
the first refinement arrives, and then serves one request at a time. Two things live in shared
memory, written by the server and read by the worker before each refinement step: the plain
``/infer`` images in flight (while there are any the worker waits, at most ``yield_s``, so that
plain inference goes first) and a stop flag per job slot (set when a job's client hangs up:
the job ends at its next step). If the worker dies (killed for memory, say), its requests fail
with ``WorkerDied`` and the next refinement starts a new one.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from multiprocessing import shared_memory
from pathlib import Path

from app.engine import InferItem
from app.refine_worker import FLAGS_AT, PLAIN, receive, send

log = logging.getLogger("airscene")

SLOTS = 4096  # job slots for stop flags: more than the jobs that can be admitted at once


class WorkerDied(RuntimeError):
    """The refinement worker ended while a job was queued or running."""


def _settle(job: Future, result: object = None, error: BaseException | None = None) -> None:
    """Give a job its outcome unless it was cancelled meanwhile (the reader thread must not die of it)."""
    if job.set_running_or_notify_cancel():
        if error is None:
            job.set_result(result)
        else:
            job.set_exception(error)


class _Worker:
    """One worker process, its two pipes, and the threads that write to and read from it."""

    def __init__(self, args: list[str], block: str, on_answer: Callable[[_Worker, object | None], None]) -> None:
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.refine_worker", *args, "--shared", block, "--answers", str(write_fd),
             "--parent", str(os.getpid())],
            stdin=subprocess.PIPE, pass_fds=(write_fd,), cwd=Path(__file__).resolve().parent.parent)
        os.close(write_fd)
        self._answers = os.fdopen(read_fd, "rb")
        self._outbox: queue.Queue = queue.Queue()
        self._on_answer = on_answer
        # a writer thread: a request larger than the pipe's buffer must not block the event loop
        # while the worker is busy with an earlier one
        threading.Thread(target=self._write, name="airscene-refine-writer", daemon=True).start()
        threading.Thread(target=self._read, name="airscene-refine-reader", daemon=True).start()

    def post(self, message: object) -> None:
        self._outbox.put(message)

    def close(self) -> None:
        """No more requests: the worker exits after the one it is running."""
        self._outbox.put(None)

    def _write(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        for message in iter(self._outbox.get, None):
            try:
                send(stdin, message)
            except OSError:  # the worker has gone; the reader reports it
                break
        try:
            stdin.close()
        except OSError:
            pass

    def _read(self) -> None:
        while True:
            try:
                message = receive(self._answers)
            except (OSError, EOFError, ValueError):
                message = None
            self._on_answer(self, message)
            if message is None:  # the worker has ended
                break
        self._answers.close()


class RefineLane:
    """The refinement worker as seen from the server: ``start`` it, ``submit`` a job, ``stop`` a
    job, and ``plain_in_flight`` (the plain images the worker gives way to)."""

    def __init__(self, weights: str | Path, device: str, mirror: bool | None, threads: int, niceness: int,
                 yield_s: float, on_ready: Callable[[bool], object] = lambda ready: None) -> None:
        """``on_ready``: called with True when a worker has loaded its engine, False when one has
        ended (from the lane's reader thread)."""
        mirror_arg = "weights" if mirror is None else "on" if mirror else "off"
        self._args = ["--weights", str(Path(weights).resolve()), "--device", device, "--mirror", mirror_arg,
                      "--threads", str(threads), "--nice", str(niceness), "--yield-s", str(yield_s)]
        self._on_ready = on_ready
        self._block = shared_memory.SharedMemory(create=True, size=FLAGS_AT + SLOTS)
        self._block.buf[:FLAGS_AT + SLOTS] = bytes(FLAGS_AT + SLOTS)
        self._lock = threading.Lock()  # guards the worker, the ready future and the pending jobs
        self._worker: _Worker | None = None
        self._ready: Future = Future()
        self._pending: dict[int, Future] = {}
        self._next = 0
        self._closed = False

    @property
    def plain_in_flight(self) -> int:
        return PLAIN.unpack_from(self._block.buf, 0)[0]

    @plain_in_flight.setter
    def plain_in_flight(self, value: int) -> None:
        PLAIN.pack_into(self._block.buf, 0, value)

    @property
    def started(self) -> bool:
        return self._worker is not None

    def pids(self) -> list[int]:
        """The worker's process id, when one is running."""
        worker = self._worker
        return [] if worker is None else [worker.proc.pid]

    def start(self) -> Future:
        """Start the worker if none runs: a future of its process id once it has loaded."""
        with self._lock:
            self._running()
            return self._ready

    def submit(self, items: list[InferItem]) -> tuple[int, Future]:
        """Queue a job: its slot (for ``stop``) and a future of (results, seconds)."""
        with self._lock:  # one lock: a worker found dead meanwhile cannot drop this job unanswered
            worker = self._running()
            slot, self._next = self._next, (self._next + 1) % SLOTS
            self._block.buf[FLAGS_AT + slot] = 0
            job: Future = Future()
            self._pending[slot] = job
            worker.post((slot, items))
        return slot, job

    def _running(self) -> _Worker:
        """The worker, started if none runs (the caller holds the lock)."""
        if self._worker is None:
            self._ready = Future()
            self._worker = _Worker(self._args, self._block.name, self._answered)
        return self._worker

    def stop(self, slot: int) -> None:
        """End the job in ``slot`` at its next step (or before it starts)."""
        self._block.buf[FLAGS_AT + slot] = 1

    def _answered(self, worker: _Worker, message: object | None) -> None:
        """The reader thread's callback: one answer, or None when the worker has ended."""
        failed: list[Future] = []
        ready = None
        with self._lock:
            if message is None and self._worker is worker:  # the pending jobs are all this worker's
                failed, self._pending = list(self._pending.values()), {}
                ready, self._worker = self._ready, None
        if message is None:
            code = worker.proc.wait()
            log.log(logging.INFO if code == 0 else logging.ERROR, "the refinement worker ended (status %s)", code)
            for job in failed:
                _settle(job, error=WorkerDied(f"the refinement worker ended (status {code})"))
            if ready is not None and not ready.done():
                ready.set_exception(WorkerDied(f"the refinement worker ended while loading (status {code})"))
            self._on_ready(False)
            return
        assert isinstance(message, tuple)
        key, status, payload = message
        if key == "ready":
            self._ready.set_result(status)
            self._on_ready(True)
            return
        with self._lock:
            job = self._pending.pop(key, None)
        if job is not None:
            if status == "ok":
                _settle(job, result=payload)
            else:
                _settle(job, error=RuntimeError(f"refinement failed in the worker: {payload}"))

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Stop every job at its next step and wait for the worker to exit (killed after
        ``timeout_s``); the lane cannot be used after it."""
        if self._closed:
            return
        self._closed = True
        self._block.buf[FLAGS_AT:FLAGS_AT + SLOTS] = b"\x01" * SLOTS
        worker = self._worker
        if worker is not None:
            worker.close()
            try:
                worker.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
        self._block.close()
        self._block.unlink()
