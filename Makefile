# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast install bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,plot]"
	touch $(STAMP)

install: $(STAMP)

# two worker processes (pytest-xdist): on 2 cores 476 s instead of 776 s (docs/benchmarks.md, "Test suite")
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n 2 tests

# the quick part of the suite: everything not marked slow (no training runs, no TensorFlow subprocesses)
test-fast: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -m "not slow" tests

demo: $(STAMP)
	sh demo.sh

bench: $(STAMP)
	$(PY) -m bench.bench_reader --records 2000
	$(PY) -m bench.bench_models --preset tiny
	$(PY) -m bench.bench_train --presets tiny
	$(PY) -m bench.bench_scale
	$(PY) -m bench.bench_faults
	$(PY) -m bench.bench_search --n 1000000
	$(PY) -m bench.bench_ingest

clean:
	rm -rf $(VENV) demo_data demo_runs
