# Everything a newcomer needs: `make demo` and `make test` set themselves up.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
VENV6  := .venv-ipykernel6
# The newest Python this machine has (pyenv: 3.13): the unit suite runs on it too.
PYTHON_NEWEST ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) \
                   $(shell python3.13 -c 'import sys; print(sys.executable)' 2>/dev/null))
VENV13 := .venv-py313
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q
CHROMIUM := /usr/lib/chromium/chromium

.PHONY: setup setup-ipykernel6 chromium demo test test-fast test-newest bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e '.[test,notebook,browser,bench]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (nbsched)" >/dev/null
	touch $@ $(VENV)/.demo-installed

# What the demo needs and nothing more (no test, browser or bench extras); `make setup` covers it too.
$(VENV)/.demo-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e '.[notebook]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (nbsched)" >/dev/null
	touch $@

# A second environment with ipykernel 6.29, so the kernel tests run on both major versions.
setup-ipykernel6: $(VENV6)/.installed

$(VENV6)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV6)
	$(VENV6)/bin/python -m pip install --disable-pip-version-check -q 'ipykernel==6.29.5' 'jupyter_client>=8' -e '.[notebook,dask]'
	touch $@

# Debian's Chromium for the browser test (Playwright's own download does not work offline).
chromium:
	@test -x $(CHROMIUM) || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

demo: $(VENV)/.demo-installed
	$(BIN)/nbsched run notebooks/quickstart.ipynb --for 20s --out demo-out

test: setup setup-ipykernel6 chromium
	NBSCHED_IPYKERNEL6_PYTHON=$(CURDIR)/$(VENV6)/bin/python $(BIN)/python -m pytest -q
	$(MAKE) test-newest

# The unit tests on the newest Python (skipped, saying so, where there is none).
test-newest:
	@if [ -z "$(PYTHON_NEWEST)" ]; then echo "no python3.13 here: the newest-Python unit run is skipped"; else \
	  test -f $(VENV13)/.installed -a $(VENV13)/.installed -nt pyproject.toml || \
	    ($(PYTHON_NEWEST) -m venv $(VENV13) && $(VENV13)/bin/python -m pip install --disable-pip-version-check -q \
	      -e '.[test,notebook]' && touch $(VENV13)/.installed) && \
	  $(VENV13)/bin/python -m pytest -q -m "not kernel and not browser and not store and not dask and not realtime"; fi

test-fast: setup
	$(BIN)/python -m pytest -q -m "not kernel and not browser and not store"

# ~7-9 minutes on a 2-core machine (7.6 min on 2026-12-08, 04:11-04:19; 9.0 min at 00:00 on a busier one): bench.py ~3.6 (with its side-by-side pairs), bench_store ~1.2, bench_kernel ~1.2, bench_dask ~1, the rest ~1
bench: setup
	$(BIN)/python bench/bench.py
	$(BIN)/python bench/bench_store.py
	$(BIN)/python bench/bench_backfill.py
	$(BIN)/python bench/bench_watch.py
	$(BIN)/python bench/bench_flow.py
	$(BIN)/python bench/bench_history.py --json bench/results_history.json
	$(BIN)/python bench/bench_kernel.py
	$(BIN)/python bench/bench_dask.py

clean:
	rm -rf $(VENV) $(VENV6) $(VENV13) demo-out .pytest_cache
