# Two commands on a fresh machine: `make demo` and `make test`. Both do all set-up first.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := dcmtk dicom3tools
BENCH_APT_PACKAGES := orthanc orthanc-dicomweb
SHARED_DATA ?= $(abspath ../shared/data)

.PHONY: setup apt test lint typecheck pytest demo bench clean

setup: apt $(VENV)/.installed

# Debian packages the tests use as real DICOM peers (dcmtk) and validator (dicom3tools).
apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	@command -v $(PY) >/dev/null || { echo "need $(PY)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench || true

typecheck: setup
	$(BIN)/mypy

pytest: setup
	RADSIGHT_SHARED_DATA=$(SHARED_DATA) $(BIN)/pytest -q

test: lint typecheck pytest

demo: setup
	RADSIGHT_SHARED_DATA=$(SHARED_DATA) bash scripts/demo.sh

bench: setup
	@missing=""; for p in $(BENCH_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	RADSIGHT_SHARED_DATA=$(SHARED_DATA) $(BIN)/python bench/archive.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
