# The two commands a newcomer needs:
#   make demo   install, fetch the SQuAD v1.1 dev set, build its index, start the web UI
#   make test   install with the test tools and run the test suite
#
# Settings (make VAR=value):
#   TORCH=cpu|cuda   cpu (default) installs PyTorch's CPU build; cuda the default (CUDA) build from PyPI
#   SHARED=DIR       folder holding data/dev-v1.1.json and models/ for offline use (default ../shared)
#   DEMO_ADDRESS=IP  where `make demo` listens (default 127.0.0.1: this machine only; docs/security.md)
#   PYTEST_ARGS=...  extra pytest arguments, e.g. -m "not slow"
#   EXTRAS=dev,ray   the optional extras make test installs (dev = test tools, server, eval, train)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= cpu
TORCH_VERSION ?= 2.13.0
SHARED ?= ../shared
INDEX ?= indexes/squad-dev
SQUAD_LOCAL := $(SHARED)/data/dev-v1.1.json
STANDIN_RERANKER := $(SHARED)/models/minilm-l6-qnli-squad-tune
STANDIN_READER := $(SHARED)/models/minilm-l6-squad-tune-reader
PYTEST_ARGS ?=
# What make test installs: the test tools, and Ray so that its tests run too (they skip without it).
EXTRAS ?= dev,ray

# Offline here, the Hub's default models are replaced by the stand-ins in $(SHARED)/models when present.
export QA_SEARCH_RERANKER ?= $(if $(wildcard $(STANDIN_RERANKER)),$(STANDIN_RERANKER),)
export QA_SEARCH_READER ?= $(if $(wildcard $(STANDIN_READER)),$(STANDIN_READER),)
# The demo never reaches the Hub when the stand-ins are used (offline): no download on a visitor's click.
DEMO_OFFLINE ?= $(if $(wildcard $(STANDIN_RERANKER)),1,)
# Where the demo listens: this machine only, unless you mean to publish it (see docs/security.md).
DEMO_ADDRESS ?= 127.0.0.1

.PHONY: install install-dev demo index data test test-fast bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first, so that the project's "torch>=2.2" is already satisfied and pip never pulls a CUDA build
# when TORCH=cpu: a local/cached CPU wheel if there is one, else PyTorch's CPU index.
$(VENV)/.torch-$(TORCH): | $(BIN)/python
ifeq ($(TORCH),cpu)
	$(BIN)/pip install "torch==$(TORCH_VERSION)+cpu" 2>/dev/null \
	  || $(BIN)/pip install "torch==$(TORCH_VERSION)" --index-url https://download.pytorch.org/whl/cpu
else
	$(BIN)/pip install "torch==$(TORCH_VERSION)"
endif
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch-$(TORCH)
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

data/dev-v1.1.json: | $(VENV)/.installed
	$(BIN)/qa-search data fetch squad-dev $(if $(wildcard $(SQUAD_LOCAL)),--from $(SQUAD_LOCAL),)

data: data/dev-v1.1.json

$(INDEX)/manifest.json: data/dev-v1.1.json
	$(BIN)/qa-search build --corpus data/dev-v1.1.json --index $(INDEX)

index: $(INDEX)/manifest.json

demo: $(INDEX)/manifest.json
	$(if $(DEMO_OFFLINE),HF_HUB_OFFLINE=1 ,)$(BIN)/streamlit run app.py --server.address $(DEMO_ADDRESS) \
	  --browser.gatherUsageStats false -- --index $(INDEX)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
