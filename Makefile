# Developer entry points. Everything runs from a project-local virtualenv, .venv/,
# built with the first `python3` on PATH (3.11 or newer) and re-installed only when
# pyproject.toml changes.
#
#   make demo    install, then run one pass on SQLite over a demo portfolio
#   make test    install, then run the whole test suite (what CI runs)
#   make lint    ruff + mypy
#   make bench   scripts/bench_pass.py, when present
#
# Extra pytest arguments: make test PYTEST_ARGS='-k demo -x'
# Demo date (default today, UTC): make demo DEMO_DATE=2027-03-01

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
DEMO_DATE ?=

.PHONY: install test demo lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11 or newer is needed, found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

# pytest's exit status 5 means it collected no test: say so plainly (and fail).
test: $(STAMP)
	@echo "$(PY) -m pytest $(PYTEST_ARGS)"
	@$(PY) -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest ran no test (exit status 5)" >&2; fi; \
	exit $$status

demo: $(STAMP)
	VENV=$(VENV) DEMO_DATE=$(DEMO_DATE) bash scripts/demo.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	@if [ -f scripts/bench_pass.py ]; then $(PY) scripts/bench_pass.py; \
	else echo "scripts/bench_pass.py does not exist yet: nothing to run"; fi

clean:
	rm -rf $(VENV) var/demo
