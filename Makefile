# Two commands for a new user: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export KERAS_BACKEND := tensorflow
PYTEST_ARGS ?=

.PHONY: demo test test-all lint format bench install clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# Main job on the bundled default corpus: pretrain a tiny switch LM, print validation
# perplexity and expert load, export a SavedModel and answer one request.
demo: $(STAMP)
	$(PY) -m tfmoe.demo

# Fast suite (CI): everything except tests marked slow.
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# ruff: lint and formatting check (configured in pyproject.toml); `make format` rewrites.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# Everything, slow checks included.
test-all: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/moe_layer.py
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/tokenizer.py
	$(PY) benchmarks/serving.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
