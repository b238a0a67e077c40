# The two commands of the README: `make demo` (the main job) and `make test`.
# Both find a Python >= 3.12 themselves (tools/find-python) and keep everything in .venv;
# `make demo` (and `make install`) install what the proxy needs, `make test` adds the
# test tools (pytest, hypothesis, ruff, mypy, embedded ClickHouse).
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.runtime
TESTING := $(VENV)/.testing

.PHONY: install demo test quick bench clean

$(RUNTIME): pyproject.toml setup.py ipfix/_speedups.c
	@interp=$$(tools/find-python) && echo "using $$interp" && $$interp -m venv $(VENV)
	$(PY) -m pip install -q -e .
	@touch $(RUNTIME)

$(TESTING): $(RUNTIME)
	$(PY) -m pip install -q -e '.[test]'
	@touch $(TESTING)

install: $(RUNTIME)

demo: $(RUNTIME)
	$(PY) tools/demo.py

# everything; then the unit tests again on the pure-Python code (no C building blocks)
test: $(TESTING)
	tools/system-deps
	$(PY) -m ruff check ipfix addon tests tools benchmarks
	$(PY) -m mypy
	$(PY) -m pytest -q
	FLOWEXPORT_PURE_PYTHON=1 $(PY) -m pytest -q -m "not slow"

# the unit tests alone (about 30 s)
quick: $(TESTING)
	$(PY) -m pytest -q -m "not slow"

# every benchmark, one after the other (about 30 minutes; needs wrk and valgrind)
bench: $(TESTING)
	tools/system-deps --bench
	$(PY) -m benchmarks.encode
	$(PY) -m benchmarks.export_path rate --seconds 30
	$(PY) -m benchmarks.export_path memory --records 1000000
	$(PY) -m benchmarks.recovery
	$(PY) -m benchmarks.proxy
	$(PY) -m benchmarks.instructions

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
