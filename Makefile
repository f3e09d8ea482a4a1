# The two commands the README starts with:
#   make demo   run the whole pipeline locally and print the per-application table
#   make test   run every test (what CI runs)

.PHONY: demo test lint build bench

demo:
	./scripts/demo.sh

# Binaries first: the end-to-end tests start the built `tailrace` and
# `tailrace-aggregator` as real processes.
test: lint
	cargo build --workspace --bins
	cargo test --workspace --no-fail-fast

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

build:
	cargo build --release --workspace --bins

bench:
	./bench/run.sh
