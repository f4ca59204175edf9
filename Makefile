# Two commands on a fresh machine:  `make demo` (set up + main job) and `make test` (set up + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SWEEPS ?= runs/sweeps

.PHONY: install browser demo test test-fast lint docs clean

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

# Debian's chromium and chromium-driver, for the documentation site's browser test: installed when missing and
# running as root (CI's fresh machine); otherwise the test says in one line what to install
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	  else echo "make: chromium/chromedriver missing: sudo apt-get install chromium chromium-driver"; fi; \
	fi

# every test; tests/test_docs_site.py builds the documentation site with --strict and checks it in Chromium
test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# the quick tier: no Ray cluster, no multi-epoch training
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check ssl_tune tests scripts examples

# the documentation site into site/; --strict: a broken link, anchor or reference fails the build
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) runs site
