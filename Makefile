# The two commands of the README: `make demo` (the main job) and `make test`.
# Both find a Python >= 3.12 themselves (tools/find-python) and keep everything in .venv.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml setup.py ipfix/_speedups.c
	@interp=$$(tools/find-python) && echo "using $$interp" && $$interp -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py

test: $(STAMP)
	tools/system-deps
	$(PY) -m ruff check ipfix addon tests tools
	$(PY) -m mypy
	$(PY) -m pytest -q

# every benchmark, one after the other (about 30 minutes; needs wrk and valgrind)
bench: $(STAMP)
	tools/system-deps --bench
	$(PY) -m tests.bench.encode
	$(PY) -m tests.bench.export_path rate --seconds 30
	$(PY) -m tests.bench.export_path memory --records 1000000
	$(PY) -m tests.bench.recovery
	$(PY) -m tests.bench.proxy
	$(PY) -m tests.bench.instructions

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
