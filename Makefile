# Two entry points for a fresh machine: `make demo` (install + main job) and `make test`.
# pip, not uv/poetry: it takes torch from this machine's local wheels instead of downloading GBs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
OUT ?= runs/default

.PHONY: install demo test benchmark

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: install
	$(VENV)/bin/fedcond federate --config configs/federated-digits.yaml --out $(OUT)

test: install
	$(PY) -m pytest

benchmark: install
	$(PY) -m simulations.benchmark_condense --out runs/benchmark-condense
