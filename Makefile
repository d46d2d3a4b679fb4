# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: demo test install clean-demo bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Stamp files re-run the install when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/gradfaith-tui demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

# CPU figures for this machine; the GPU ones need --device cuda (see README).
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/explorer_speed.py --sizes 10000
	$(BIN)/python benchmarks/cam_speed.py --img-size 64 --archs resnet10t,tinynet_e
	$(BIN)/python benchmarks/train_speed.py --img-size 64 --archs resnet10t,tinynet_e

# The demo's phantoms, cache and models (the demo profile's names), so the next `make demo` starts over.
clean-demo:
	rm -rf data/phantoms data/cache $(addprefix checkpoints/,resnet10t resnet14t densenet-s tinynet_e vit-tiny-p8)
