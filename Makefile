# GDX — one entry point for setting up, testing and benchmarking.
# `make test` must pass on a fresh Debian 12 machine: it installs what it needs first.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV       ?= .venv
PY         := $(VENV)/bin/python
BIN        := $(VENV)/bin
PYTHON     ?= python3
STAMP      := $(VENV)/.installed
CRD_STAMP  := infra/crd/node_modules/.installed
APT_STAMP  := /var/lib/gdx/.apt-installed
APT_PACKAGES := postgresql postgresql-contrib libpq5 mariadb-server mariadb-client openssl ca-certificates curl \
                openssh-client podman runc catatonit debootstrap prometheus prometheus-alertmanager chromium fonts-wqy-microhei
# Front-end nodes in tests: Debian 12 containers booting systemd, from an image built here (no registry).
BASE_IMAGE ?= localhost/gdx-debian-systemd:bookworm
APT_CACHE  ?= /var/cache/gdx-molecule/apt
VERSION    := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' gdx/__init__.py)
BUNDLE     := dist/gdx-node-$(VERSION).tar.gz
export GDX_BASE_IMAGE := $(BASE_IMAGE)
export GDX_APT_CACHE := $(APT_CACHE)

.PHONY: help setup apt venv podman crd-schemas base-image bundle lint lint-playbooks typecheck test test-fast test-exchange \
        test-node test-provision test-monitoring test-infra dashboards images render bench-exchange bench-sync bench-upload \
        bench-provision bench-monitor bench-infra bench-up test-e2e \
        up down status clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: apt venv podman crd-schemas ## install system packages, podman's settings and the virtualenv (idempotent, fast when nothing changed)

apt: $(APT_STAMP)
$(APT_STAMP): scripts/apt-packages.sh Makefile
	@bash scripts/apt-packages.sh $(APT_PACKAGES)
	@mkdir -p $(dir $@) && touch $@

venv: $(STAMP)
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet -e '.[dev,provision,monitor,infra]' 2>&1 | { grep -v '^WARNING: Location' || true; }
	@touch $@

crd-schemas: $(CRD_STAMP) ## the CRDs' schemas (CloudNativePG, Prometheus Operator) for checking rendered manifests (npm)
$(CRD_STAMP): infra/crd/package.json infra/crd/package-lock.json
	@command -v npm >/dev/null || bash scripts/apt-packages.sh nodejs npm
	@cd infra/crd && npm ci --no-audit --no-fund --silent 2>&1 | { grep -v 'npm warn' || true; }
	@touch $@

podman: apt ## podman's runtime and limits for systemd containers (/etc/containers/containers.conf)
	@bash scripts/podman-setup.sh

base-image: podman ## the Debian 12 systemd image of test nodes, made with debootstrap (about a minute, once)
	@bash scripts/build-base-image.sh
	@mkdir -p $(APT_CACHE)/gdx-site-gaj $(APT_CACHE)/gdx-site-wjw $(APT_CACHE)/gdx-db-node-ssh

bundle: $(BUNDLE) ## the agent release bundle the Ansible agent role installs (dist/gdx-node-VERSION.tar.gz)
BUNDLE_SOURCES := pyproject.toml $(shell find gdx exchange front_end_node monitoring infra -name node_modules -prune -o \( -name '*.py' -o -name '*.sql' -o -name '*.yml' \) -print)
$(BUNDLE): $(STAMP) $(BUNDLE_SOURCES)
	@$(PY) scripts/build_node_bundle.py --force

lint: venv ## ruff (lint and format check)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

lint-playbooks: venv ## yamllint and ansible-lint (production profile) over playbooks/
	cd playbooks && PATH=$(CURDIR)/$(BIN):$$PATH $(CURDIR)/$(BIN)/yamllint --strict . \
	  && PATH=$(CURDIR)/$(BIN):$$PATH $(CURDIR)/$(BIN)/ansible-lint -q

typecheck: venv ## mypy --strict over the Python packages
	$(BIN)/mypy

test: setup lint typecheck lint-playbooks base-image images ## everything: set-up, lint, types, the whole test suite
	@# The fast tests two at a time, as make test-fast runs them; then the slow ones, one at a time
	@# (podman hosts, the local platform, timings), with the slowest listed.
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -m 'not slow' -q -n 2
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -m slow --durations=25

test-fast: venv crd-schemas ## the inner loop (under a minute): lint, format, types, and the tests not marked slow, two at a time
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -m 'not slow' -x -q -n auto

test-exchange: venv ## only the central exchange's tests
	$(BIN)/pytest tests/exchange -q

test-node: venv ## only the front-end agent's tests (real PostgreSQL and MariaDB), the slow ones included
	$(BIN)/pytest tests/front_end_node -q

test-monitoring: setup ## the monitoring agent, rules (promtool, amtool), dashboards, status page, Prometheus end to end
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest tests/monitoring tests/gdx/test_reconcile.py -q

dashboards: venv ## the Grafana dashboards as JSON in build/dashboards
	$(BIN)/gdx monitor dashboards --out build/dashboards

test-e2e: setup base-image images ## make up end to end: data equal at the consumer, a node cut off and back, make down
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest tests/e2e -v

test-provision: setup base-image ## the Ansible roles and playbooks on podman systemd hosts (molecule + testinfra)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest tests/provision -q

bench-exchange: setup ## ingest rows/s through the API next to a raw COPY (last line: JSON; ARGS="--resources 1 --rounds 1")
	$(PY) -m benchmarks.exchange_ingest $(ARGS)

bench-sync: setup ## all three hops, polled and log-captured: full load vs a raw COPY pipeline, lag at a steady rate, deletions (last line: JSON)
	$(PY) -m benchmarks.node_sync

bench-upload: setup ## a 1,000,000-row CSV and a 100,000-row workbook uploaded and applied, next to a raw COPY (last line: JSON)
	$(PY) -m benchmarks.upload $(ARGS)

bench-monitor: setup ## one monitor probing 1,000 and 5,000 simulated nodes (last line: JSON)
	$(PY) -m benchmarks.monitor --nodes 1000 5000

images: base-image bundle ## the exchange+monitor image, PostgreSQL and MariaDB for the local platform, rebuilt when changed
	@bash scripts/build-images.sh

test-infra: venv crd-schemas ## the Pulumi program under mocks: components, stacks, schemas, policy rules (fast)
	$(BIN)/pytest tests/infra -q -m 'not slow'

render: venv crd-schemas ## the manifests of STACK (default prod) in build/manifests/STACK, checked; PKI= and INVENTORY= to override
	$(BIN)/gdx render --stack $(or $(STACK),prod) --out build/manifests/$(or $(STACK),prod) \
	  $(if $(PKI),--pki $(PKI)) $(if $(INVENTORY),--inventory $(INVENTORY))

bench-infra: venv ## run the Pulumi program under mocks and render the prod stack (last line: JSON)
	$(PY) -m benchmarks.infra_render

bench-up: venv ## make up with nothing built, then make down and make up again (last line: JSON)
	$(PY) -m benchmarks.up

bench-provision: setup base-image bundle ## site.yml on a fresh node, then a rerun (last line: JSON)
	PATH=$(CURDIR)/$(BIN):$$PATH $(PY) -m benchmarks.provision

up: setup images ## the platform on this machine: exchange, three departments' nodes and databases, monitoring, Prometheus
	$(BIN)/gdx platform up

down: venv ## remove everything `make up` made, and nothing else (images and package caches stay; PURGE=1 drops the caches)
	$(BIN)/gdx platform down $(if $(PURGE),--purge)

status: venv ## the local platform's summary: health and lag per department, URLs
	$(BIN)/gdx platform status

clean: ## remove the virtualenv, caches and build output; make up's state (build/local) stays: make down removes it
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
	find build -mindepth 1 -maxdepth 1 ! -name local -exec rm -rf {} + 2>/dev/null || true
