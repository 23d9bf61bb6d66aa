# Developer entry points. Everything runs from a project-local virtualenv, .venv/,
# built with the first `python3` on PATH (3.11 or newer) and re-installed only when
# pyproject.toml changes.
#
#   make demo    install, then run one pass on SQLite over a demo portfolio
#   make test    install, then run the whole test suite (what CI runs)
#   make lint    ruff + mypy
#   make bench   every benchmark (scripts/bench_all.py): one table of ratios, also written
#                to var/bench/latest.md; make bench BENCH_ARGS=--quick for a fast run
#
# Extra pytest arguments: make test PYTEST_ARGS='-k demo -x'
# Demo date (default today, UTC): make demo DEMO_DATE=2027-03-01

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
DEMO_DATE ?=
BENCH_ARGS ?=

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
	$(PY) scripts/bench_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var/demo
