# Two commands on a fresh machine: `make demo` and `make test`. Both do all set-up first.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := dcmtk dicom3tools chromium
BENCH_APT_PACKAGES := orthanc orthanc-dicomweb
SHARED_DATA ?= $(abspath ../shared/data)
# The web viewer (viewer/, TypeScript + Vite) is built into the package; rebuilt only when its sources change.
VIEWER_BUILT := src/radsight/api/static/viewer/index.html
VIEWER_SRC := $(shell find viewer/src viewer/scripts -type f 2>/dev/null) $(wildcard viewer/*.html viewer/*.json viewer/*.ts)

.PHONY: setup apt test lint typecheck pytest demo bench clean

setup: apt $(VENV)/.installed $(VIEWER_BUILT)

viewer/node_modules/.package-lock.json: viewer/package-lock.json
	cd viewer && npm ci --no-audit --no-fund

# The build first checks the generated REST types against the Python routes: it needs the venv.
$(VIEWER_BUILT): viewer/node_modules/.package-lock.json $(VIEWER_SRC) | $(VENV)/.installed
	cd viewer && npm run build
	touch $@

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
	$(BIN)/pip install -q -e '.[dev,train]'
	touch $@

lint: setup
	$(BIN)/ruff check src tests bench

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
