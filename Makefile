# vet: `make demo` vets the virtual lab's three guests, `make test` runs vet's own tests.
# Both install what they need first (apt packages, a virtualenv, the report tooling).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Tools the stages run on the local host, and what the tests need besides Python.
APT_PACKAGES := stress-ng fio iperf3 lshw dmidecode pciutils util-linux smartmontools \
    openssh-server openssh-client socat lrzsz \
    debootstrap squashfs-tools zstd cpio qemu-system-x86 dnsmasq-base ipmitool ipxe openipmi ethtool mosquitto chromium strace
# Byte-code caches on: every pytest process (xdist workers, the tests' inner runs) would
# otherwise compile vet, pytest and their plugins again (an environment may turn it off).
export PYTHONDONTWRITEBYTECODE :=
# Node's CA list lacks the system's; behind a TLS-inspecting proxy npm would fail.
export NODE_EXTRA_CA_CERTS ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
NPM_FLAGS := --no-audit --no-fund --update-notifier=false
PROFILE ?= quick
INVENTORY ?= inventory/virtual
PYTEST_WORKERS ?= 2

.PHONY: setup system test lint demo lab-up lab-down report clean bench

setup: system $(BIN)/.installed node_modules/.package-lock.json

system:
	@missing=$$(for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:" $$missing; \
	    $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# npm ci writes node_modules/.package-lock.json: this re-runs when the lock file changes.
node_modules/.package-lock.json: package.json package-lock.json $(BIN)/.installed
	$(BIN)/npm ci $(NPM_FLAGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

test: setup lint
	$(BIN)/pytest -n $(PYTEST_WORKERS) -p no:cacheprovider

# The main job: vet the virtual lab's three guests (PXE-booted from the live image) with
# the quick profile, then build the report. INVENTORY=inventory/local vets this machine.
# Vetting verdicts (pytest exit 1) are the demo's output, not its failure.
demo: setup
	@if [ "$(INVENTORY)" = inventory/local ] && [ ! -f inventory/local/host_vars/localhost.yml ]; then \
	    echo "drafting inventory/local/host_vars/localhost.yml from this machine's hardware"; \
	    echo "(edit it to say what the machine should be; see docs/INVENTORY.md)"; \
	    $(BIN)/vet inventory draft > inventory/local/host_vars/localhost.yml; \
	fi
	@if [ "$(INVENTORY)" = inventory/virtual ]; then \
	    $(BIN)/vet lab status --inventory $(INVENTORY) >/dev/null 2>&1 || \
	    $(BIN)/vet lab up --inventory $(INVENTORY) || exit $$?; \
	fi
	@run_id=demo-$$(date +%Y%m%d-%H%M%S); \
	workers=$$($(BIN)/vet inventory check $(INVENTORY) | grep -c ' power='); \
	$(BIN)/pytest suites -m stage --inventory $(INVENTORY) --profile $(PROFILE) \
	    -n $$workers --run-id $$run_id -p no:cacheprovider -rfEs; rc=$$?; \
	echo; $(BIN)/vet report --run $$run_id || exit $$?; \
	if [ "$(INVENTORY)" = inventory/virtual ]; then \
	    echo; echo "failed guests are held, up for a look: vet holds prints how to get in"; \
	    echo "(console log and events under reports/runs/$$run_id/); vet release --all"; \
	    echo "frees them for the next run. Bring the lab down (holds close with it) with:"; \
	    echo "make lab-down   (or: vet lab down)"; \
	fi; \
	[ $$rc -le 1 ] || exit $$rc

lab-up: setup
	$(BIN)/vet lab up --inventory inventory/virtual

lab-down: setup
	$(BIN)/vet lab down --inventory inventory/virtual

# The benchmarks' quick variants (docs/BENCHMARKS.md has the full ones and the figures).
# Root: they start sshd and a network namespace. BENCH_BOOT=1 adds a lab boot (minutes).
bench: setup
	$(BIN)/python benchmarks/bench_ssh.py --repeat 30 --ansible-repeat 2
	$(BIN)/python benchmarks/bench_store.py --writers 1 4 8 --rows 1000 --seconds 5
	$(BIN)/python benchmarks/bench_memory.py --minutes 30
	$(BIN)/python benchmarks/bench_fleet.py --hosts 10 --workers 2 4
	$(BIN)/python benchmarks/bench_console_watch.py --sizes 1 10 --repeat 1
	$(BIN)/python benchmarks/bench_serial.py --sizes 1 10 --labgrid-kib --runs 200 --repeat 1
	@if [ -n "$(BENCH_BOOT)" ]; then $(BIN)/python benchmarks/bench_boot.py --together 1; fi
	@if [ -n "$(BENCH_BOOT)" ]; then $(BIN)/python benchmarks/bench_scaling.py --guests 1 2; fi

report: setup
	$(BIN)/vet report

clean:
	rm -rf reports/runs reports/html reports/vet.sqlite* reports/allure-history.jsonl*
