"""The refinement worker: a process of its own (``python -m app.refine_worker``), started and fed
by ``app.refine_lane``.

It is started as a fresh interpreter on this module, not through ``multiprocessing``, whose
spawned children re-run the parent's main script (a user's script that builds the app at its
top level would start a second server). It lowers its CPU priority before it imports torch and
PyTorch3D and loads the weights, so the seconds that takes are the server's idle CPU's.

Protocol: length-prefixed pickles. Requests on stdin: ``(slot, items)``, the slot naming the job.
Answers on the file descriptor given as ``--answers``: ``("ready", pid, None)`` once loaded, then
``(slot, "ok", (results, seconds))`` or ``(slot, "error", text)`` per request. A block of shared
memory (``--shared``) holds the plain images in flight (int32 at offset 0, written by the
server) and one stop flag per job slot (a byte each from offset 4): the worker reads them
before each refinement step. Only the server writes to the worker; both ends are this package.
"""

from __future__ import annotations

import argparse
import os
import pickle
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import BinaryIO

HEADER = struct.Struct("!Q")  # the length of the pickle that follows
PLAIN = struct.Struct("i")  # plain images in flight, at offset 0 of the shared block
FLAGS_AT = PLAIN.size  # stop flags from here, one byte per job slot


def send(stream: BinaryIO, message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def receive(stream: BinaryIO) -> object | None:
    """The next message, or None when the other end has closed."""
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    (size,) = HEADER.unpack(head)
    data = stream.read(size)
    return None if len(data) < size else pickle.loads(data)


def gate(plain: Callable[[], int], stopped: Callable[[], bool], most_s: float) -> bool:
    """Asked before each refinement step: waits while plain images are in flight (``plain()`` > 0,
    at most ``most_s``), so that plain inference goes first; True when the job must end
    (``stopped()``: its client has gone)."""
    until = time.monotonic() + most_s
    while plain() > 0 and not stopped() and time.monotonic() < until:
        time.sleep(0.005)
    return stopped()


def _exit_with_parent(parent: int) -> None:
    """Watchdog: the worker ends when the server's process has gone (killed without a shutdown)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="airscene's refinement worker (started by the service)")
    ap.add_argument("--weights", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--mirror", choices=["on", "off", "weights"], default="weights")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--nice", type=int, default=10)
    ap.add_argument("--yield-s", type=float, default=0.15, help="longest wait for plain images before a step")
    ap.add_argument("--shared", required=True, help="name of the shared memory block")
    ap.add_argument("--answers", type=int, required=True, help="file descriptor to write answers to")
    ap.add_argument("--parent", type=int, required=True)
    args = ap.parse_args(argv)
    os.nice(args.nice)  # first: the imports below and torch's threads run at it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server, which stops the worker
    threading.Thread(target=_exit_with_parent, args=(args.parent,), daemon=True).start()
    answers = os.fdopen(args.answers, "wb")
    requests = sys.stdin.buffer
    sys.stdout = sys.stderr  # nothing may write into the protocol by accident

    from multiprocessing import resource_tracker, shared_memory

    import torch

    from app.engine import Engine

    block = shared_memory.SharedMemory(name=args.shared)
    resource_tracker.unregister(block._name, "shared_memory")  # the server owns it and unlinks it
    buf = block.buf
    torch.set_num_threads(args.threads)
    mirror = {"on": True, "off": False, "weights": None}[args.mirror]
    engine = Engine.load(args.weights, args.device, mirror)
    send(answers, ("ready", os.getpid(), None))
    while (message := receive(requests)) is not None:  # until the server closes stdin
        slot, items = message
        t = time.perf_counter()
        try:
            results = engine.infer_batch(items, lambda s=slot: gate(lambda: PLAIN.unpack_from(buf, 0)[0],
                                                                    lambda: buf[FLAGS_AT + s] != 0, args.yield_s))
            send(answers, (slot, "ok", (results, time.perf_counter() - t)))
        except Exception as e:  # noqa: BLE001 - reported to the server, which raises it for the request
            send(answers, (slot, "error", f"{type(e).__name__}: {e}"))
    del buf
    block.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
