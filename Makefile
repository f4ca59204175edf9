# Two commands on a fresh machine:  `make demo` (set up + main job) and `make test` (set up + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SWEEPS ?= runs/sweeps

.PHONY: install demo test test-fast lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "ssl-tune needs Python >= 3.10"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# the main job: a quickstart sweep on offline data and a local Ray cluster, then its export
demo: $(STAMP)
	rm -rf $(SWEEPS)/quickstart
	$(BIN)/ssl-tune sweep --space search_spaces/quickstart.yaml --storage $(SWEEPS) --name quickstart
	$(BIN)/ssl-tune export --sweep $(SWEEPS)/quickstart --out runs/quickstart-best --force

test: $(STAMP)
	$(BIN)/python -m pytest -q

# the quick tier: no Ray cluster, no multi-epoch training
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check ssl_tune tests scripts

clean:
	rm -rf $(VENV) runs
