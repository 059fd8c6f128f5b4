# Fresh machine: `make demo` or `make test` create .venv, install torch (pinned) first, then rnnkit with
# its test extras. TORCH_PIP_ARGS passes pip options for torch alone, e.g. PyTorch's CPU index on a
# machine where PyPI would serve the CUDA build. A second run reuses the environment (the stamp file).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.rnnkit-installed
TORCH_PIP_ARGS ?=

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py rnnkit/engine/fused/step_kernels.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0 $(TORCH_PIP_ARGS)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m rnnkit demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_layers.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
