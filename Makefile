# The two commands the README starts with:
#   make demo   run the whole pipeline locally and print the per-application table
#   make test   run every test (what CI runs)

.PHONY: demo test lint build bench packaging fuzz soak outage

# Seconds per fuzz target in `make test`; `make fuzz FUZZ_SECONDS=1800` hunts longer.
FUZZ_SECONDS ?= 20

demo:
	./scripts/demo.sh

# Binaries first: the end-to-end tests start the built `tailrace` and
# `tailrace-aggregator` as real processes.
# The packaging checks here build x86_64 only; `make packaging` adds the aarch64
# cross build (about 3 min more; needs the aarch64 rustup target and cargo-zigbuild).
test: lint
	TAILRACE_PKG_ARCHES=x86_64 ./packaging/check.sh
	cargo build --workspace --bins
	cargo test --workspace --no-fail-fast
	./scripts/fuzz.sh $(FUZZ_SECONDS)

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

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
