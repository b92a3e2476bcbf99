# Developer commands of bj_api_sync. `make` or `make help` lists them.
# Odoo 19.0 is found through ODOO_SRC or the importable `odoo` package; PostgreSQL is
# reused on 127.0.0.1:$(PGPORT) or started privately under .pgdata/ (see scripts/devenv.sh).
# To add a target: give it a `## description` comment and list it in .PHONY.

SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
export PYTHON

.PHONY: help run test test-plain test-odoo test-pytest lint pot pot-check e2e bench

help: ## Show the targets
	@echo "Targets:"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: ## Odoo with demo data on http://127.0.0.1:8069 (db bj_demo, admin/admin) + receiver on :8070
	@bash scripts/run_demo.sh

test: ## All tests: plain (pytest tests_plain), then Odoo's when Odoo 19.0 is found
	@bash scripts/run_tests.sh

test-plain: ## Only the Odoo-free tests (pytest tests_plain)
	@bash scripts/run_tests.sh --plain

test-odoo: ## Only the Odoo tests, in a fresh database (odoo-bin --test-enable)
	@bash scripts/run_tests.sh --odoo

test-pytest: ## The Odoo tests through pytest-odoo, in a fresh database
	@bash scripts/run_tests.sh --pytest-odoo

e2e: ## End-to-end outbox check: real Odoo server, cron threads, receiver (~10 min)
	$(PYTHON) e2e/run_e2e.py

bench: ## Benchmarks B0-B8 on a fresh database; writes bench/RESULTS.md (~15 min)
	$(PYTHON) bench/run_bench.py

lint: ## ruff check + ruff format --check (ruff.toml); pylint-odoo when installed (.pylintrc)
	@bash scripts/lint.sh

pot: ## Regenerate i18n/bj_api_sync.pot with Odoo's export, in a fresh database (~2 min)
	@bash scripts/check_pot.sh --write

pot-check: ## Fail when i18n/bj_api_sync.pot is stale (skipped without Odoo; .ci/run runs it)
	@bash scripts/check_pot.sh
