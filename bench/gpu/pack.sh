#!/usr/bin/env bash
# Packs what a CUDA machine without a package registry lacks for bench/gpu/run.sh: this project's
# runtime and test packages for CPython 3.12 on x86-64 Linux (torch itself excluded: the machine
# has torch 2.11.0 with CUDA), installed into one folder, debug symbols stripped, as one
# .gpu-pack/site.tar.xz (about 55 MB; the PyTorch3D wheel alone is 67 MB, over a 64 MiB carry).
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
find "$SITE" -name '*.so*' -type f -exec strip --strip-debug {} + 2>/dev/null || true
find "$SITE" \( -name '__pycache__' -o -name tests \) -type d -prune -exec rm -rf {} +
rm -rf "$SITE"/bin
tar -C "$OUT" -cf - site | xz -T0 -9e > "$OUT/site.tar.xz"
rm -rf "$SITE"
ls -l "$OUT/site.tar.xz"
