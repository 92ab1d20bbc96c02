"""Running ``bench/blender_scene.py`` in the optional ``.venv-blender`` from the main environment.

The product never imports bpy: Blender runs as a subprocess on JSON spec files, in chunks, and
PNGs that exist are skipped, so an interrupted render resumes where it stopped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLENDER_PYTHON = ROOT / ".venv-blender" / "bin" / "python"
SCRIPT = ROOT / "bench" / "blender_scene.py"


def blender_available() -> bool:
    """Whether ``make blender-env`` has been run here."""
    return BLENDER_PYTHON.exists()


def render_specs(specs: list[dict], out: Path, mode: str = "photo", threads: int = 1, chunk: int = 25,
                 log=print) -> None:
    """Render every spec whose ``out / spec['file']`` is missing, ``chunk`` specs per Blender
    process. Raises ``RuntimeError`` naming the chunk when Blender fails."""
    if not blender_available():
        raise RuntimeError(f"{BLENDER_PYTHON} not found: run `make blender-env` first")
    out.mkdir(parents=True, exist_ok=True)
    todo = [s for s in specs if not (out / s["file"]).exists()]
    log(f"{len(specs) - len(todo)} of {len(specs)} images exist; rendering {len(todo)} ({mode}, {threads} thread(s))")
    t0 = time.perf_counter()
    for lo in range(0, len(todo), chunk):
        part = todo[lo:lo + chunk]
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(part, f)
        cmd = [str(BLENDER_PYTHON), str(SCRIPT), "--specs", f.name, "--out", str(out),
               "--mode", mode, "--threads", str(threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        Path(f.name).unlink(missing_ok=True)
        if proc.returncode != 0:
            raise RuntimeError(f"Blender failed on specs {part[0]['file']}..{part[-1]['file']}:\n{proc.stderr[-3000:]}")
        done = lo + len(part)
        per = (time.perf_counter() - t0) / done
        log(f"  {done}/{len(todo)} rendered, {per:.1f} s per image, about {per * (len(todo) - done) / 60:.0f} min left")
        sys.stdout.flush()
