# `make demo`, `make test` and `make bench` each build .venv from nothing when needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned, so nothing later pulls a different build.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/randla demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/run.py
	$(PY) bench/kernels.py
	$(PY) bench/interp.py
	$(PY) bench/completion.py
	$(PY) bench/compress.py
	$(PY) bench/dask_svd.py
	$(PY) bench/pca.py
	$(PY) bench/spectral.py
	$(PY) bench/attention.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis
