# The two commands the README starts with:
#   make demo   run the whole pipeline locally and print the per-application table
#   make test   run every test (what CI runs)

.PHONY: demo test lint build bench packaging

demo:
	./scripts/demo.sh

# Binaries first: the end-to-end tests start the built `tailrace` and
# `tailrace-aggregator` as real processes.
test: lint packaging
	cargo build --workspace --bins
	cargo test --workspace --no-fail-fast

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

build:
	cargo build --release --workspace --bins

bench:
	./bench/run.sh

# .deb/.rpm (x86_64, and aarch64 when its toolchain is installed), lintian,
# rpm queries, systemd-analyze, install/upgrade/purge test, cfn-lint, packer.
packaging:
	./packaging/check.sh
