# Nothing is assumed installed beyond python3 and make: `install` builds .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The stamp lives inside .venv, so deleting .venv also forces a reinstall.
STAMP := $(VENV)/install.stamp
LINT_STAMP := $(VENV)/lint.stamp

.PHONY: install test test-pg15 lint bench demo

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c "import sys; sys.exit(sys.version_info < (3, 11))" \
		|| { echo "batchctl needs python3 >= 3.11 (found $$($(PYTHON) --version))" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[test,demo]"
	touch $(STAMP)

demo: install
	$(BIN)/batchctl demo

test: install
	$(BIN)/pytest

# The suite against Debian's PostgreSQL 15 (apt-get install postgresql-15; `make test`'s embedded
# server is 18): a cluster of the run's own in a temp dir, stopped and deleted afterwards.
PG15_BIN ?= /usr/lib/postgresql/15/bin

test-pg15: install
	$(BIN)/python tests/helpers/pgcluster.py --bin $(PG15_BIN) -- $(BIN)/pytest

# ruff, and mypy over the package, the tests and the benchmarks ([tool.mypy] in pyproject.toml).
lint: $(LINT_STAMP)
	$(BIN)/ruff check batchctl tests bench scripts
	$(BIN)/ruff format --check batchctl tests bench scripts
	$(BIN)/mypy

$(LINT_STAMP): $(STAMP)
	$(BIN)/python -m pip install -e ".[test,demo,lint]"
	touch $(LINT_STAMP)

# Every benchmark, figures and same-run ratios printed (bench/RESULTS.md has a recorded run).
bench: install
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python bench/lifecycle.py
	$(BIN)/python bench/peer.py
	$(BIN)/python bench/peer_bounds.py
	$(BIN)/python bench/dispatch_latency.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/report_build.py
	$(BIN)/python bench/webhooks.py
	$(BIN)/python bench/dashboard_reads.py

# claim_entries with every compliance rule over 1M call logs against the same claim with no
# policy, then the flat-cost table (bench/RESULTS.md, section 9). Needs no PgQueuer.
.PHONY: bench-compliance
bench-compliance: install
	$(BIN)/python bench/claim_compliance.py

# The dashboard's reads on a 100k-entry batch over 300k entries of history: the entries table's
# keyset pages, the live part and the whole batch page over HTTP, against the 100 ms target
# (bench/RESULTS.md, section 11). Needs no PgQueuer.
.PHONY: bench-dashboard
bench-dashboard: install
	$(BIN)/python bench/dashboard_reads.py
