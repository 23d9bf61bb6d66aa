# Developer entry points. Everything runs from a project-local virtualenv, .venv/,
# built with the first `python3` on PATH (3.11 or newer) and re-installed only when
# pyproject.toml changes.
#
#   make demo    install, then run one pass on SQLite over a demo portfolio
#   make test    install, then run the whole test suite (what CI runs)
#   make lint    ruff + mypy
#   make bench   every benchmark (scripts/bench_all.py): one table of ratios, also written
#                to var/bench/latest.md; make bench BENCH_ARGS=--quick for a fast run
#   make fuzz    the import file and command-line fuzzing with many more examples
#                (FUZZ_EXAMPLES, default 3000; `make test` runs 150)
#   make mutate  mutation check of the pure core (mutmut; slow, not part of `make test`)
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

# Mutants run by `make mutate` (mutmut names: module.x_function__mutmut_N; fnmatch
# patterns). Files that may be mutated at all: [tool.mutmut] only_mutate in pyproject.toml.
MUTATE ?= 'worker.rules.*' \
	'worker.mail.decisions.x_window_decision__*' 'worker.mail.decisions.x__window__*' \
	'worker.mail.decisions.x_retry_decision__*' 'worker.mail.decisions.x_settle__*' \
	'worker.mail.decisions.x__final__*'
MUTATE_JOBS ?= 2

FUZZ_EXAMPLES ?= 3000

.PHONY: install test demo lint bench fuzz mutate clean

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

fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -p no:cacheprovider tests/test_fuzz.py \
		--timeout=0 --hypothesis-show-statistics

bench: $(STAMP)
	$(PY) scripts/bench_all.py $(BENCH_ARGS)

# Hypothesis runs derandomized (profile "ci") so that a mutant is judged the same way
# every time. Results stay in mutants/ (`mutmut results`, `mutmut show NAME`).
mutate: $(STAMP)
	HYPOTHESIS_PROFILE=ci $(VENV)/bin/mutmut run --max-children $(MUTATE_JOBS) $(MUTATE)
	$(PY) scripts/mutation_report.py

clean:
	rm -rf $(VENV) var/demo mutants
