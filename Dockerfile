# airscene service on the GPU: docker build -t airscene . && docker run --gpus all -p 8000:8000 airscene
# Without a GPU the same image runs on the CPU (AIRSCENE_DEVICE=auto falls back; see docker-compose.yml).
FROM nvidia/cuda:13.0.2-runtime-ubuntu24.04

# torch's CUDA 13.0 build comes from PyTorch's own index; everything else from the default one
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

# Ubuntu 24.04's python3 is 3.12 (easypytorch3d 0.7.9.post1 ships a cp312 wheel)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv \
    && useradd --system --create-home --uid 10001 --shell /usr/sbin/nologin airscene

WORKDIR /srv/airscene

# torch first, in its own layer (GBs, rarely changes); `pip install .` then finds it satisfied
RUN pip install --index-url "$TORCH_INDEX_URL" torch==2.11.0

# What the service runs, and nothing else: no training/, experiments/, bench/ or other weights
COPY pyproject.toml README.md ./
COPY renderer ./renderer
COPY inference ./inference
COPY app ./app
RUN pip install .

# The shipped weights, inside the image (readable by the service user whatever their mode here)
COPY weights/air.safetensors weights/air.json ./weights/
RUN chmod -R a+rX weights

ENV AIRSCENE_WEIGHTS=/srv/airscene/weights/air.safetensors \
    AIRSCENE_DEVICE=auto

USER 10001
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status != 200)"]

ENTRYPOINT ["uvicorn", "app.main:app"]
# the flags of app.config.SERVER_OPTIONS (tests/test_api_container.py checks they agree)
CMD ["--host", "0.0.0.0", "--port", "8000", "--no-access-log", "--http", "h11", \
     "--h11-max-incomplete-event-size", "65536", "--limit-concurrency", "1000", "--timeout-keep-alive", "30"]
