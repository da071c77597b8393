# Two commands for a newcomer: `make run` (the demo) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
ADDR ?= 127.0.0.1:8000

.PHONY: run manage test test-sla lint format clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

# The demo is a development server on the sandbox: DEBUG on (it serves the static files and
# accepts the development key), unless DEBUG is set in the environment.
# DEMO_ARGS passes options to the demo, e.g. DEMO_ARGS="--initial 40" (another burst of adds on
# a second start) or "--no-history".
run: export DEBUG ?= true
run: $(STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo --addr $(ADDR) $(DEMO_ARGS)

# Any manage.py command on the same footing as the demo (DEBUG on unless set), e.g.
# make manage ARGS="wecom_sandbox simulate --code xhs-618 --adds 20"
manage: export DEBUG ?= true
manage: $(STAMP)
	$(PY) manage.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Timing SLAs (pytest -m sla), left out of `make test`: they need the real services
# (DATABASE_URL=postgres://..., CELERY_BROKER_URL=redis://...) and skip without them.
test-sla: $(STAMP)
	$(PY) -m pytest -m sla $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache .ruff_cache
