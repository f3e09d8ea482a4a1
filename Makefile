# The two commands the README starts with:
#   make demo   run the whole pipeline locally and print the per-application table
#   make test   run every test (what CI runs)

.PHONY: demo test lint build bench packaging fuzz soak outage

# Seconds per fuzz target in `make test`; `make fuzz FUZZ_SECONDS=1800` hunts longer.
FUZZ_SECONDS ?= 20

demo:
	./scripts/demo.sh

# One build serves everything: `cargo test --no-run` builds every test and
# binary (the end-to-end tests start the built `tailrace`, `tailrace-aggregator`
# and `bootstrap` as real processes), the packaging checks package that same
# `tailrace` (x86_64; `make packaging` builds release packages for x86_64 and
# aarch64), then the doctests, then nextest runs the tests of all crates side by
# side (its summary is the run's last line). Fuzzing is `make fuzz`; the tests replay the fuzz
# corpora and every earlier find (fuzz/regressions/). README, "CI time".
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)

test: lint
	cargo test --workspace --no-run --locked
	TAILRACE_PKG_ARCHES=x86_64 TAILRACE_PKG_BINARY=$(TARGET_DIR)/debug/tailrace ./packaging/check.sh
	cargo test --workspace --doc --locked
	cargo nextest run --workspace --no-fail-fast --locked

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	python3 scripts/module_cycles.py

build:
	cargo build --release --workspace --bins

bench:
	./bench/run.sh

# cargo-fuzz on every parser of hostile input; finds go to fuzz/regressions/.
fuzz:
	./scripts/fuzz.sh $(FUZZ_SECONDS)

# 30 minutes at 20k lines/s into rotating files with periodic Kinesis faults
# (docs/RELIABILITY.md); scripts/soak.sh [minutes] [lines/s] for other runs.
soak:
	./scripts/soak.sh

# Kinesis unreachable for 5 minutes at 5k lines/s (raw mode): memory, backlog,
# drain rate, every line once (docs/RELIABILITY.md).
outage:
	./scripts/outage.sh

# .deb/.rpm (x86_64, and aarch64 when its toolchain is installed), lintian,
# rpm queries, systemd-analyze, install/upgrade/purge test, cfn-lint, packer.
packaging:
	./packaging/check.sh
