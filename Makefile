# Single entry point. `make test` works on a fresh machine: it creates .venv if missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test serve system-tools clean-data blender-env fuzz reliability gpu-pack gpu-bench

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP) system-tools
	$(PY) -m pytest

# Slow suite: Schemathesis over every operation of a live service on the loopback (bench/fuzz.py).
fuzz: $(STAMP)
	$(PY) -m pip install --quiet 'schemathesis>=4,<5'
	$(PY) -m bench.fuzz

# Slow suite: issue 14's storm (200 parallel refine=50 + 16 plain clients) and 5 s stall trials
# against a live service on the loopback (bench/reliability.py); exit 1 when a target is missed.
reliability: $(STAMP)
	$(PY) -m bench.reliability

# The GPU path (README, "On a GPU"): gpu-pack packs what a registry-less CUDA machine lacks into
# .gpu-pack/ (about 13 MB); gpu-bench runs the CUDA tests, bench.serve, bench.render, training
# iterations/s there in about ten minutes (bench/gpu/run.sh; results in $$OUT/gpu or bench/results/gpu).
gpu-pack: $(STAMP)
	bash bench/gpu/pack.sh

gpu-bench:
	bash bench/gpu/run.sh

# The service on 127.0.0.1:8000 with the shipped weights (AIRSCENE_* variables apply).
serve: $(STAMP)
	$(VENV)/bin/airscene serve --host 127.0.0.1 --port 8000

# Debian tools the API tests drive: headless Chromium + chromedriver (demo page) and
# docker-compose (compose file check; hadolint comes from pip). apt only runs when one is missing.
APT_TOOLS := /usr/bin/chromium /usr/bin/chromedriver /usr/bin/docker-compose
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-tools:
	@for f in $(APT_TOOLS); do test -x $$f || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing chromium, chromium-driver, docker-compose (apt)"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium chromium-driver docker-compose >/dev/null; \
	fi

clean-data:
	rm -rf data

# Optional: Blender's Cycles as a Python module (bpy 4.5, about 370 MB) for the
# cross-renderer development set (bench/crossrender/, bench/blender_scene.py).
# The product never imports bpy; tests that need it skip when .venv-blender is absent.
BLENDER_VENV := .venv-blender
BLENDER_PYTHON ?= python3.11
$(BLENDER_VENV)/.installed:
	test -x $(BLENDER_VENV)/bin/python || $(BLENDER_PYTHON) -m venv $(BLENDER_VENV)
	$(BLENDER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BLENDER_VENV)/bin/python -m pip install --quiet 'bpy==4.5.*' numpy
	$(BLENDER_VENV)/bin/python -c 'import bpy; print("bpy", bpy.app.version_string)'
	touch $@

blender-env: $(BLENDER_VENV)/.installed
