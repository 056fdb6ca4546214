# Trellis — common tasks. `make run` and `make test` work on a fresh machine: they start
# PostgreSQL and Redis on loopback (installing them from Debian if missing) unless
# TRELLIS_DATABASE__URL / TRELLIS_TEST_DATABASE_URL already point somewhere.

SHELL := /bin/bash
CARGO ?= cargo
# `make run PROFILE=dev` for a quicker, unoptimised build.
PROFILE ?= release

.PHONY: run dev test sytest fuzz services services-stop build release lint fmt clean help

help:
	@echo "make run            build and start the monolith on 127.0.0.1:8008 (starts PostgreSQL if needed)"
	@echo "make test           unit, contract and end-to-end tests against real PostgreSQL and Redis"
	@echo "make sytest         SyTest (the Matrix conformance suite) against a monolith, held to tests/sytest/floor"
	@echo "make fuzz           Schemathesis over every client-server OpenAPI file against a monolith: no 5xx, no panic"
	@echo "make services       start PostgreSQL and Redis on loopback and print their URLs"
	@echo "make services-stop  stop them"
	@echo "make lint           rustfmt check and clippy with warnings as errors"

run:
	@set -e; \
	if [ -z "$$TRELLIS_DATABASE__URL" ]; then eval "$$(scripts/services.sh start)"; fi; \
	$(CARGO) run --profile $(PROFILE) -p trellis-homeserver --bin trellis -- serve

dev:
	@$(MAKE) run PROFILE=dev

test:
	@set -e; \
	if [ -z "$$TRELLIS_TEST_DATABASE_URL" ] || [ -z "$$TRELLIS_TEST_REDIS_URL" ]; then eval "$$(scripts/services.sh start)"; fi; \
	scripts/test-clients.sh; \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

sytest:
	@scripts/sytest.sh

fuzz:
	@scripts/fuzz.sh

services:
	@scripts/services.sh start

services-stop:
	@scripts/services.sh stop

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release -p trellis-homeserver

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
