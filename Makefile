# Everyday actions. `make demo` deploys into a local AWS emulator; `make test` runs every check.
# Both set up what a fresh machine lacks first (pipenv, locked Python and npm dependencies,
# checkov's environment, Debian packages): see `make deps`.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_VERBOSITY := -1
# jsii's Node 20 end-of-life banner buries cdktf's output; Node 20 runs cdktf 0.21 fine.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CHECKPOINT_DISABLE := 1
# Filesystem mirror holding hashicorp/aws 5.100.0 (no registry route here); override for your machine.
export TF_PROVIDER_MIRROR ?= /opt/tf-plugins

PYTHON ?= python3.11
PIPENV_VERSION := 2026.10.3
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .tools/checkov
STACK_DIR := cdktf.out/stacks/orthweb
PYTEST := CHECKOV=$(CURDIR)/$(CHECKOV_VENV)/bin/checkov $(PY) -m pytest
say = @printf '\n\033[1m==> %s\033[0m\n' "$(1)"

.PHONY: help deps debian install tools synth lint format test test-fast bench-test-fast plan deploy destroy bench-synth

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

.tools/pipenv-$(PIPENV_VERSION):
	$(call say,pipenv $(PIPENV_VERSION))
	command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is missing: install Python 3.11 (or run make PYTHON=/path/to/python3.11)" >&2; exit 2; }
	[ "$$($(PYTHON) -m pipenv --version 2>/dev/null | awk '{print $$NF}')" = "$(PIPENV_VERSION)" ] ||
	  $(PYTHON) -m pip install --quiet "pipenv==$(PIPENV_VERSION)"
	mkdir -p .tools && touch $@

$(VENV)/.synced: Pipfile.lock .tools/pipenv-$(PIPENV_VERSION)
	$(call say,Installing locked Python dependencies into $(VENV))
	$(PYTHON) -m pipenv sync --dev
	touch $@

node_modules/.installed: package-lock.json
	$(call say,Installing the pinned cdktf CLI (npm ci))
	command -v npm >/dev/null || { echo "npm is missing: install Node.js 20 (Debian: apt-get install nodejs npm)" >&2; exit 2; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	$(call say,Installing checkov into its own environment $(CHECKOV_VENV))
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --no-deps -r requirements/checkov.txt
	touch $@

debian: ## Install the Debian packages tests and demo need (apt-get as root or via sudo)
	dev/setup-debian.sh requirements/debian.txt

install: $(VENV)/.synced node_modules/.installed ## Install locked Python and npm dependencies
tools: $(CHECKOV_VENV)/.installed ## Install checkov (policy checks)
deps: install tools debian ## Everything a fresh machine lacks: pipenv, Python, npm, checkov, Debian packages

synth: install ## Synthesize cdktf.out/stacks/orthweb/cdk.tf.json
	$(call say,Synthesizing the stack)
	$(PY) main.py
	echo "wrote $(STACK_DIR)/cdk.tf.json"

lint: install ## ruff (lint + format check) and mypy
	$(call say,ruff and mypy)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install ## Apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: deps lint ## Every check: lint, then all tiers (fast, emulator, lifecycle, app, fresh clone)
	$(call say,pytest: every tier)
	$(PYTEST)

test-fast: install tools ## After every edit: settings, constructs, synth, rendering, terraform validate, checkov
	$(call say,pytest: fast tier)
	$(PYTEST) -m fast

bench-test-fast: install tools ## Wall time of the fast tier (target: under 90 s)
	$(PY) bench/test_fast_time.py

bench-synth: install ## Synth wall time beside the jsii import floor
	$(PY) bench/synth_time.py

define require_real_aws
	if [ -n "$${AWS_ENDPOINT_URL:-}" ]; then
	  echo "AWS_ENDPOINT_URL is set ($$AWS_ENDPOINT_URL): refusing to run a real-AWS target against an emulator. Unset it, or use make demo." >&2; exit 2
	fi
	if ! $(VENV)/bin/aws sts get-caller-identity >/dev/null 2>&1; then
	  echo "AWS did not accept any credentials (aws sts get-caller-identity failed): configure them (aws configure, AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), check the network, and retry." >&2; exit 2
	fi
endef

plan: synth ## Plain `terraform plan` of the synthesized stack against real AWS
	$(call require_real_aws)
	$(call say,terraform init + plan in $(STACK_DIR))
	cd $(STACK_DIR) && terraform init -input=false && terraform plan -input=false

deploy: install ## cdktf deploy to real AWS
	$(call require_real_aws)
	$(call say,cdktf deploy)
	npx cdktf deploy orthweb

destroy: install ## cdktf destroy of the real deployment
	$(call require_real_aws)
	$(call say,cdktf destroy)
	npx cdktf destroy orthweb

.PHONY: demo demo-down demo-plan demo-replace-host cost diagram

demo: install debian ## Deploy into a local AWS emulator (real cdktf CLI), then run Orthanc locally on its secrets
	$(PY) -m orthweb_dev.demo up

demo-down: install ## Stop the demo's Orthanc, destroy the demo deployment and stop the emulator
	$(PY) -m orthweb_dev.demo down

demo-plan: install ## Plain `terraform plan` of the demo deployment (expect: no changes)
	$(PY) -m orthweb_dev.demo plan

demo-replace-host: install ## The runbook's destroy/apply -target aws_instance.orthweb, in the emulator
	$(PY) -m orthweb_dev.demo replace-host

cost: synth ## Daily cost of the synthesized stack, images per TB-month, and each topology compared
	$(PY) -m orthweb_dev.cost
	$(call say,Each topology (synthesized with its settings))
	$(PY) -m orthweb_dev.cost --topologies

diagram: synth ## Regenerate docs/architecture.svg from the synthesized stack (needs graphviz)
	command -v dot >/dev/null || { echo "graphviz is missing: make debian (or apt-get install graphviz)" >&2; exit 1; }
	$(PY) -m orthweb_dev.diagram | dot -Tsvg -o docs/architecture.svg
	$(PY) -m orthweb_dev.diagram --scaled | dot -Tsvg -o docs/architecture-scaled.svg
	echo "wrote docs/architecture.svg and docs/architecture-scaled.svg"

.PHONY: app-up app-down bench-ingest images

images: install debian ## Build the stand-in orthanc and nginx images from Debian packages (cached by their inputs' digest)
	$(PY) -m orthweb_dev.images

app-up: install debian ## Run the rendered compose file on Docker as the host does (stand-in images; PostgreSQL with TLS), ports on loopback
	$(PY) -m orthweb_dev.harness_cli up

app-down: install ## Stop the application harness
	$(PY) -m orthweb_dev.harness_cli down

bench-ingest: install debian ## DICOM TLS ingest benchmark: Orthweb vs transport limit vs stock Orthanc (ORTHANCS=2: also 2 hosts behind the balancer)
	$(PY) bench/ingest.py --orthancs $(or $(ORTHANCS),1)
