"""Schemathesis over every operation of a live service on the loopback: no 5xx, answers that
match the schema. A slow suite, not part of ``make test`` (``make fuzz``).

    python -m bench.fuzz [--weights weights/air.safetensors] [--examples 25]

Starts ``uvicorn app.main:app`` with the service's server options on a free loopback port (the
given weights, one thread, no warm-up), runs ``st run`` against its ``/openapi.json`` with
positive and negative data (``--mode all``), deterministic generation and a bounded number of
examples per operation, and exits with Schemathesis's status. Checks: every one except those
that hold the schema to what it cannot say (a camera query parameter must be JSON, a K matrix
a pinhole matrix: ``positive_data_acceptance``), which are listed in the output.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from app.config import SERVER_OPTIONS

ROOT = Path(__file__).resolve().parent.parent
EXCLUDED = ("positive_data_acceptance",)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uvicorn_flags() -> list[str]:
    return [x for k, v in SERVER_OPTIONS.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def start_server(weights: str, **env: str) -> tuple[subprocess.Popen, str]:
    """``uvicorn app.main:app`` with the service's server options on a free loopback port, the
    given weights, no warm-up and ``env`` (AIRSCENE_* settings) -> (the process, its URL) once
    ``/readyz`` says ready; RuntimeError (the process killed) when it does not within a minute."""
    port = free_port()
    env = {**os.environ, "AIRSCENE_WEIGHTS": weights, "AIRSCENE_WARMUP": "false", **env}
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port",
                               str(port), "--log-level", "warning", *uvicorn_flags()], env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if urllib.request.urlopen(url + "/readyz", timeout=2).status == 200:
                return server, url
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the service did not become ready")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=str(ROOT / "weights" / "air.safetensors"))
    ap.add_argument("--examples", type=int, default=25, help="examples per operation and phase")
    args = ap.parse_args(argv)
    try:
        server, url = start_server(args.weights, AIRSCENE_THREADS="1")
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    try:
        print(f"excluded checks: {', '.join(EXCLUDED)}")
        st = Path(sys.executable).with_name("st")
        return subprocess.call([str(st), "run", url + "/openapi.json", "--checks", "all", "--exclude-checks",
                                ",".join(EXCLUDED), "--mode", "all", "--max-examples", str(args.examples),
                                "--generation-deterministic", "--request-timeout", "60"])
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
