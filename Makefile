# VisionQueue. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

IMAGES ?=
PYTEST_ARGS ?=
BENCH_ARGS ?=

.DEFAULT_GOAL := help
CHROMIUM := /usr/bin/chromium

.PHONY: help venv browser demo up test test-fast bench gpu-workers migrate superuser clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(INSTALLED): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

venv: $(INSTALLED) ## Create .venv and install the pinned requirements

browser: ## Install Debian's chromium (for the browser tests) when it is missing
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's chromium and chromium-driver for the browser tests"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
	      || { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; } \
	      || echo "warning: could not install chromium: the browser tests will be skipped (and fail under CI)"; \
	  else \
	    echo "note: $(CHROMIUM) is missing and installing it needs root and apt-get: the browser tests will be skipped"; \
	  fi; \
	fi

demo: $(INSTALLED) ## Recognise samples/ (or IMAGES=dir) through the whole system, print the results
	$(PY) manage.py demo $(if $(IMAGES),--images "$(IMAGES)")

up: $(INSTALLED) ## Run web :8000, worker and Flower :5555 in the foreground (Ctrl-C stops)
	$(PY) manage.py up

test: $(INSTALLED) browser ## Run every test (unit, integration with real Redis and workers, browser)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(INSTALLED) ## Unit tests only (no worker processes)
	$(PY) -m pytest -m "not integration and not slow" $(PYTEST_ARGS)

bench: $(INSTALLED) ## Measure F (model alone), R (plain loop) and S (the system) over the photos (or IMAGES=dir)
	$(PY) -m bench $(if $(IMAGES),--images "$(IMAGES)") $(BENCH_ARGS)

gpu-workers: $(INSTALLED) ## Start the GPU pool alone: one worker per visible GPU (needs REDIS_URL, DATABASE_URL)
	$(PY) manage.py gpu_workers

migrate: $(INSTALLED) ## Create or update the database
	$(PY) manage.py migrate

superuser: $(INSTALLED) ## Create an admin account for /admin/
	$(PY) manage.py createsuperuser

clean: ## Remove the venv and local state (database, uploads, logs)
	rm -rf $(VENV) var staticfiles
	find media -mindepth 1 ! -name .gitkeep -delete
