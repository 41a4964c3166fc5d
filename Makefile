# gpufleet: the two commands are `make lab` and `make test` (see README.md).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GPUFLEET_CACHE ?= $(HOME)/.cache/gpufleet
PULUMI_VERSION := $(shell sed -n 's/^PULUMI_VERSION=//p' scripts/bootstrap)
PROMETHEUS_DEB_VERSION := $(shell sed -n 's/^PROMETHEUS_DEB_VERSION=//p' scripts/bootstrap)
export PATH := $(CURDIR)/.venv/bin:$(GPUFLEET_CACHE)/pulumi/$(PULUMI_VERSION)/bin:$(GPUFLEET_CACHE)/prometheus-tools/$(PROMETHEUS_DEB_VERSION)/bin:$(PATH)
export PULUMI_SKIP_UPDATE_CHECK := true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION := true
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# This checkout's code first, even when the venv was installed from another checkout.
export PYTHONPATH := $(CURDIR)/src
PY_PATHS := $(wildcard src tests bench scripts/pulumi-language-python scripts/test-tiers library plugins stacks roles/*/filter_plugins roles/slurm/files/usr/local/sbin/gpufleet-node-health)

.PHONY: help bootstrap lab lab-down test lint unit integration molecule bench clean

help:
	@echo "make lab     bootstrap, then bring up the lab (container nodes with emulated BMCs)"
	@echo "make test    bootstrap, static checks, pytest (unit + system), molecule for every role"
	@echo "make bench   benchmarks (figures for the notes; nothing is enforced)"
	@echo "make lint | unit | integration | molecule [ROLE=name]   one tier at a time"

bootstrap:
	scripts/bootstrap

lab: bootstrap
	gpufleet lab up --no-power-on
	gpufleet lab pulumi-up
	gpufleet lab up
	gpufleet lab converge
	gpufleet lab status

lab-down:
	gpufleet lab down

# Each tier timed; the table is printed at the end and kept in .cache/test-times.json.
# integration+molecule: both at once, molecule at nice 10, so its scenarios use the CPU the
# lab's system test leaves idle while it waits on its containers (scripts/test-tiers).
test:
	scripts/test-tiers bootstrap lint unit integration+molecule

# mypy runs beside the other checks (each uses one core); its output follows theirs.
lint:
	mkdir -p .cache
	mypy > .cache/mypy.log 2>&1 & mypy=$$!; trap 'kill $$mypy 2>/dev/null || :' EXIT; \
	ruff check $(PY_PATHS); \
	ruff format --check $(PY_PATHS); \
	yamllint --strict .; \
	ansible-lint; \
	ansible-playbook --syntax-check site.yml; \
	rc=0; wait $$mypy || rc=$$?; echo "== mypy (beside the others)"; cat .cache/mypy.log; \
	test $$rc -eq 0

# One pytest worker per core (pytest-xdist).
unit:
	pytest -n auto tests/unit

# The lab's system test (about 15 minutes alone, much of it waiting on its containers; -s: it prints
# the detection and takeover times it measures) runs beside the other system tests (about
# 5 minutes); their output follows the lab's. Either failing fails the tier.
integration:
	mkdir -p .cache
	pytest --durations=10 tests/integration --ignore tests/integration/test_lab.py \
	  > .cache/integration-others.log 2>&1 & others=$$!; \
	lab=0; pytest -s --durations=10 tests/integration/test_lab.py || lab=$$?; \
	rc=0; wait $$others || rc=$$?; \
	echo "== the other system tests (beside the lab's)"; cat .cache/integration-others.log; \
	test $$lab -eq 0 && test $$rc -eq 0

molecule:
	scripts/molecule-all $(ROLE)

bench:
	@for b in bench/bench_*.py; do echo "== $$b"; python "$$b"; done

clean:
	rm -rf .cache .pytest_cache .ruff_cache
