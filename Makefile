# Two commands set everything up: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FLEET  ?= fleet
HOSTS  ?= 4

.PHONY: install run test test-linear test-deps fleet fleet-down fleet-repo db db-down bench bench-fleet lint clean screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# An editable install has no bytecode until Python writes it; where PYTHONDONTWRITEBYTECODE is set
# (CI images, some shells) every start would compile runner/ again (~80 ms): compile it here.
install: $(STAMP)
	@$(BIN)/python -m compileall -q runner

# The main job: the health check on the embedded localhost inventory, then its history row.
run: install
	@$(BIN)/runbook -w . run health-check --non-interactive; rc=$$?; \
	  $(BIN)/runbook -w . history -n 5; exit $$rc

# What the tests need beyond Python packages (sshd for the fleet, cron), installed when missing.
test-deps:
	bash tests/install-test-deps.sh

test: install test-deps
	$(BIN)/python -m pytest

# The library's fleet tests once more with the accelerator off: every step on Ansible's own `linear`,
# as a runbook with `accelerate: false` or a site with `accelerate = "none"` runs them (.ci/run runs it).
test-linear: install test-deps
	RUNBOOK_ACCELERATE=none $(BIN)/python -m pytest tests/test_library_*.py

# A fleet of isolated SSH hosts for trying runbooks on realistic machines (needs root).
fleet: install test-deps
	$(BIN)/python tests/fleet.py up $(HOSTS) --dir $(FLEET)
	@echo "try: $(BIN)/runbook run health-check -i $(FLEET)/inventory.yml"

fleet-down:
	-$(BIN)/python tests/aptrepo.py down --fleet $(FLEET) 2>/dev/null
	$(BIN)/python tests/fleet.py down --dir $(FLEET)

# A private PostgreSQL for trying the team store by hand (needs PostgreSQL installed; as root it runs as
# the postgres user): prints the RUNBOOK_DATABASE_URL to export.
PGDIR ?= /tmp/runbook-pg-$(USER)
db: install test-deps
	@$(BIN)/python tests/pg.py up --dir $(PGDIR)

db-down:
	@$(BIN)/python tests/pg.py down --dir $(PGDIR)

# The package repositories patch-rollout's tests build, served to the running fleet's apt (file: sources
# in /var/tmp/runbook-fleet-apt-repo, which the hosts see through their overlay): practise patch-rollout.
fleet-repo: install
	$(BIN)/python tests/aptrepo.py up --fleet $(FLEET)

bench: install
	$(BIN)/python bench/overhead.py

# README's pictures (docs/*.png), retaken by headless Chromium from real runs on localhost.
screenshots: install
	$(BIN)/python docs/screenshots.py

# The speed figures of README's "Speed" section: starts 10 SSH hosts (needs root), stops them at the end.
bench-fleet: install test-deps
	$(BIN)/python bench/speed.py

# Type checks, and the shipped playbooks and roles under ansible-lint's strictest profile
# (tests/test_lint.py runs the same check in `make test`).
lint: install
	$(BIN)/python -m mypy
	$(BIN)/ansible-lint --profile production --offline playbooks roles
