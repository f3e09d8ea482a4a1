# The commands the README starts with:
#   make demo    run the whole pipeline locally and print the per-application table
#   make check   the fast loop: fmt, module graph, map names, clippy, unit and property tests
#   make test    run every test (what CI runs)

.PHONY: demo check test lint build bench packaging fuzz soak outage budget

# Seconds per fuzz target in `make fuzz`; `make fuzz FUZZ_SECONDS=1800` hunts longer.
FUZZ_SECONDS ?= 20

demo:
	./scripts/demo.sh

# One build serves everything: `cargo test --no-run` lints, builds every test and
# binary (the end-to-end tests start the built `tailrace`, `tailrace-aggregator`
# and `bootstrap` as real processes), the packaging checks package that same
# `tailrace` (x86_64; `make packaging` builds release packages for x86_64 and
# aarch64), then the doctests, then nextest runs the tests of all crates side by
# side (its summary is the run's last line). Fuzzing is `make fuzz`; the tests replay the fuzz
# corpora and every earlier find (fuzz/regressions/). Its time, and why it is that short: docs/CI.md.
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)

# Clippy's lints run inside that one build: `cargo clippy` is `cargo check`
# with clippy-driver as RUSTC_WORKSPACE_WRAPPER, and the same wrapper on the
# test build lints the workspace's own crates as they are compiled, so the
# dependencies are compiled once (docs/CI.md). Warnings fail the build
# through the workspace's lints (Cargo.toml, [workspace.lints]: warnings =
# "deny"), so no flag reaches the compiler but the wrapper.
CLIPPY_DRIVER := $(shell rustup which clippy-driver 2>/dev/null || command -v clippy-driver)
LINTED := RUSTC_WORKSPACE_WRAPPER=$(CLIPPY_DRIVER)

# `make check`: what a change to a parser, a decision table or a setting
# needs in seconds: formatting, the module graph, the names
# docs/ARCHITECTURE.md gives (scripts/architecture_names.py), clippy on every target of
# the workspace, then the unit and property tests of every crate: the
# libraries' and binaries' own tests, the pure crates' test binaries, and
# the `it` binaries of the agent, the aggregator and the inventory updater
# without the tests that start servers (moto_server, httpd, logrotate,
# cargo lambda, the agent under systemd's protocol). No doctests, no e2e
# (tests/), no packaging. README, "Development", has its time.
CHECK_TESTS := --lib --bins --test it --test roundtrip --test zones --test no_alloc \
	--test fuzz_regressions --test properties --test format
NO_SERVERS := not test(/(_moto|apache_httpd|logrotate_matrix|lambda_watch|watchdog_notify)::/)

check:
	cargo fmt --all -- --check
	python3 scripts/module_cycles.py
	python3 scripts/architecture_names.py
	cargo clippy --workspace --all-targets --locked
	cargo nextest run --workspace --locked --no-fail-fast $(CHECK_TESTS) -E '$(NO_SERVERS)'

test:
	@test -n "$(CLIPPY_DRIVER)" || { echo "clippy-driver not found (rustup component add clippy)" >&2; exit 1; }
	cargo fmt --all -- --check
	python3 scripts/module_cycles.py
	python3 scripts/architecture_names.py
	$(LINTED) cargo test --workspace --all-targets --no-run --locked
	TAILRACE_PKG_ARCHES=x86_64 TAILRACE_PKG_BINARY=$(TARGET_DIR)/debug/tailrace ./packaging/check.sh
	$(LINTED) cargo test --workspace --doc --locked
	$(LINTED) cargo nextest run --workspace --no-fail-fast --locked

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets
	python3 scripts/module_cycles.py
	python3 scripts/architecture_names.py

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
