# The two commands the README starts with:
#   make demo   run the whole pipeline locally and print the per-application table
#   make test   run every test (what CI runs)

.PHONY: demo test lint build bench packaging fuzz soak outage budget

# Seconds per fuzz target in `make test`; `make fuzz FUZZ_SECONDS=1800` hunts longer.
FUZZ_SECONDS ?= 20

demo:
	./scripts/demo.sh

# One build serves everything: `cargo test --no-run` lints, builds every test and
# binary (the end-to-end tests start the built `tailrace`, `tailrace-aggregator`
# and `bootstrap` as real processes), the packaging checks package that same
# `tailrace` (x86_64; `make packaging` builds release packages for x86_64 and
# aarch64), then the doctests, then nextest runs the tests of all crates side by
# side (its summary is the run's last line). Fuzzing is `make fuzz`; the tests replay the fuzz
# corpora and every earlier find (fuzz/regressions/). README, "CI time".
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)

# Clippy's lints run inside that one build: `cargo clippy` is `cargo check`
# with clippy-driver as RUSTC_WORKSPACE_WRAPPER, and the same wrapper on the
# test build lints the workspace's own crates as they are compiled, so the
# dependencies are compiled once, for the tests, not a second time for
# `cargo check` (10 minutes of a fresh machine's CI). `--all-targets` lints
# the benches too, as `make lint` does; `make lint` stays the quick check.
CLIPPY_DRIVER := $(shell rustup which clippy-driver 2>/dev/null || command -v clippy-driver)
LINTED := RUSTC_WORKSPACE_WRAPPER=$(CLIPPY_DRIVER) CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__

test:
	@test -n "$(CLIPPY_DRIVER)" || { echo "clippy-driver not found (rustup component add clippy)" >&2; exit 1; }
	cargo fmt --all -- --check
	python3 scripts/module_cycles.py
	$(LINTED) cargo test --workspace --all-targets --no-run --locked
	TAILRACE_PKG_ARCHES=x86_64 TAILRACE_PKG_BINARY=$(TARGET_DIR)/debug/tailrace ./packaging/check.sh
	$(LINTED) cargo test --workspace --doc --locked
	$(LINTED) cargo nextest run --workspace --no-fail-fast --locked

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
# (docs/RELIABILITY.md); scripts/load.sh soak [minutes] [lines/s] for other runs.
soak:
	./scripts/load.sh soak

# Kinesis unreachable for 5 minutes at 5k lines/s (raw mode): memory, backlog,
# drain rate, every line once (docs/RELIABILITY.md).
outage:
	./scripts/load.sh outage

# The host budget: agent CPU share and RSS at 1k, 10k and 50k lines/s for 10
# minutes each, with `wc -l` on the same files as the floor (BENCHMARKS.md);
# scripts/load.sh budget [minutes] [lines/s ...] for other runs.
budget:
	./scripts/load.sh budget

# .deb/.rpm (x86_64, and aarch64 when its toolchain is installed), lintian,
# rpm queries, systemd-analyze, install/upgrade/purge test, cfn-lint, packer.
packaging:
	./packaging/check.sh
