# Two commands on a fresh machine: `make demo` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# onnxruntime-web for the "web" export format, pinned in package.json / package-lock.json.
NODE_STAMP := node_modules/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml constraints.txt $(NODE_STAMP)
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

demo: $(STAMP)
	$(VENV)/bin/ember demo

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/train_speed.py

clean:
	rm -rf $(VENV) build *.egg-info
