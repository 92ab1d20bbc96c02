#!/usr/bin/env bash
# Packs what a CUDA machine without a package registry lacks for bench/gpu/run.sh: this project's
# runtime and test packages for CPython 3.12 on x86-64 Linux (torch itself excluded: the machine
# has torch 2.11.0 with CUDA), installed into one folder, debug symbols stripped, as one
# .gpu-pack/site.tar.xz (the PyTorch3D wheel alone is 67 MB, over a 64 MiB carry).
#   bash bench/gpu/pack.sh            (or: make gpu-pack)
# Then, on the GPU machine, from a checkout with .gpu-pack beside it: bash bench/gpu/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PIP="${PIP:-.venv/bin/python -m pip}"
OUT=.gpu-pack
SITE="$OUT/site"
rm -rf "$OUT" && mkdir -p "$SITE"
TARGET=(--quiet --target "$SITE" --python-version 3.12 --implementation cp --abi cp312
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
        --only-binary=:all:)
# PyTorch3D without its torch requirement (the machine's torch is the one it was built for)
$PIP install "${TARGET[@]}" --no-deps 'easypytorch3d==0.7.9.post1'
# the service's and the test suite's packages, from pyproject.toml (torch and easypytorch3d left out)
# with their dependencies; the browser, container, Ray and Triton tests are not run there
# (bench/gpu/run.sh says which), so selenium, hadolint, ray and tritonclient stay out.
DEPS=$(.venv/bin/python - <<'PY'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
skip = ("torch", "easypytorch3d", "selenium", "hadolint", "ray", "tritonclient", "scikit-image")
wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
print("\n".join(d for d in wanted if not d.startswith(skip)))
PY
)
mapfile -t DEPS <<< "$DEPS"
$PIP install "${TARGET[@]}" "${DEPS[@]}"
# distributions the device tool's CUDA image already holds (/work/.library/device/KINDS.md, read
# 2026-11-17): removed by their RECORD so the pack fits the 64 MiB the working tree travels in
# beside the weights (PYTHONPATH puts the pack first, so a kept copy would shadow the machine's)
"${PY:-.venv/bin/python}" - "$SITE" <<'PY'
import csv, pathlib, re, shutil, sys
site = pathlib.Path(sys.argv[1]).resolve()
present = {"annotated-doc", "anyio", "certifi", "click", "contourpy", "cycler", "fonttools", "h11", "httpcore",
           "httpx", "idna", "iniconfig", "kiwisolver", "matplotlib", "numpy", "packaging", "pillow", "pluggy",
           "prometheus-client", "pygments", "pyparsing", "pytest", "python-dateutil", "pyyaml", "safetensors",
           "scipy", "six", "tqdm", "typing-extensions", "uvloop"}
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
for info in site.glob("*.dist-info"):
    if norm(info.name.split("-")[0]) not in present:
        continue
    for row in csv.reader((info / "RECORD").read_text().splitlines()):
        path = site / row[0] if row else site
        if path.is_file() and site in path.resolve().parents:
            path.unlink()
    shutil.rmtree(info, ignore_errors=True)
for folder in sorted(site.iterdir(), reverse=True):  # folders the removals emptied
    if folder.is_dir() and not any(f.is_file() for f in folder.rglob("*")):
        shutil.rmtree(folder)
PY
find "$SITE" -name '*.so*' -type f -exec strip --strip-debug {} + 2>/dev/null || true
find "$SITE" \( -name '__pycache__' -o -name tests \) -type d -prune -exec rm -rf {} +
rm -rf "$SITE"/bin
tar -C "$OUT" -cf - site | xz -T0 -9e > "$OUT/site.tar.xz"
rm -rf "$SITE"
ls -l "$OUT/site.tar.xz"
