# Two commands on a fresh Debian 12 machine: `make run` and `make test` (both install first).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
# The system's Python 3.11 (Debian 12's python3 is 3.11).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
SHARED_DATA ?= ../shared/data
OUT ?= out
PORT ?= 8000

.PHONY: help setup system run test test-all bench lint format clean sample-captures

help:
	@echo "make run    set up, serve the API and web pages with a demo shop holding the sample model"
	@echo "make test   set up and run the test suite (CI runs this)"
	@echo "make setup  install only: system packages, $(VENV), npm packages"
	@echo "make bench  quality and speed benchmarks (slow; JSON results under $(OUT)/bench)"
	@echo "make lint   ruff format --check and ruff check"

setup: system $(VENV)/.installed node_modules/.installed

system:
	@tools/install_system_packages.sh

$(VENV)/.installed: pyproject.toml | system
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

node_modules/.installed: package.json package-lock.json | system
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The service in the foreground (storage under $(OUT)/storage, the demo merchant's key in
# $(OUT)/demo_api_key); the sample capture is reconstructed and published on the first run.
run: setup
	$(PY) tools/run_demo.py --out $(OUT) --port $(PORT)

test: setup
	$(PY) -m pytest -m "not slow"

test-all: setup
	$(PY) -m pytest

bench: setup
	RECON_SHARED_DATA=$(SHARED_DATA) $(PY) benchmarks/reconstruction.py --out $(OUT)/bench/recon
	RECON_SHARED_DATA=$(SHARED_DATA) $(PY) benchmarks/depth_quality.py --out $(OUT)/bench/depth.json
	RECON_SHARED_DATA=$(SHARED_DATA) $(PY) benchmarks/synth_and_evaluate.py --out $(OUT)/bench/synth
	RECON_SHARED_DATA=$(SHARED_DATA) $(PY) benchmarks/commerce.py --out $(OUT)/bench/commerce
	RECON_SHARED_DATA=$(SHARED_DATA) $(PY) benchmarks/scale.py --out $(OUT)/bench/scale
	RECON_SHARED_DATA=$(SHARED_DATA) $(PY) benchmarks/hard_captures.py --out $(OUT)/bench/hard
	RECON_SHARED_DATA=$(SHARED_DATA) $(PY) benchmarks/hard_video.py --out $(OUT)/bench/hard_video
	RECON_SHARED_DATA=$(SHARED_DATA) $(PY) benchmarks/hard_turntable.py --out $(OUT)/bench/hard_turntable
	RECON_SHARED_DATA=$(SHARED_DATA) $(PY) benchmarks/hard_flipped.py --out $(OUT)/bench/hard_flipped
	RECON_SHARED_DATA=$(SHARED_DATA) $(PY) benchmarks/hard_dino.py --out $(OUT)/bench/hard_dino
	RECON_SHARED_DATA=$(SHARED_DATA) $(PY) benchmarks/hard_low_texture.py --out $(OUT)/bench/hard_low_texture
	RECON_SHARED_DATA=$(SHARED_DATA) $(PY) benchmarks/capture_check.py --out $(OUT)/bench/capture_check
	RECON_SHARED_DATA=$(SHARED_DATA) $(PY) benchmarks/sparse_subsets.py --out $(OUT)/bench/sparse_subsets --captures $(OUT)/bench/recon/captures
	RECON_SHARED_DATA=$(SHARED_DATA) $(PY) benchmarks/phone_photos.py --out $(OUT)/bench/phone_photos --captures $(OUT)/bench/recon/captures
	$(PY) benchmarks/scene.py --out $(OUT)/bench/scene
	$(PY) benchmarks/api_load.py --out $(OUT)/bench/api.json
	$(PY) benchmarks/throughput.py --out $(OUT)/bench/throughput.json

lint: $(VENV)/.installed
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The bundled captures (committed; ≤ 3 MB each). Regenerate after changing synth or the products.
SAMPLE_SYNTH := $(VENV)/bin/recon synth --views 24 --size 640 --novel-views 4 --overwrite
sample-captures: $(VENV)/.installed
	$(SAMPLE_SYNTH) cereal_box sample_captures/cereal_box
	$(SAMPLE_SYNTH) mug sample_captures/mug
	$(SAMPLE_SYNTH) bottle sample_captures/bottle_table --background table

clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache
