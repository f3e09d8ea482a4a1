#!/usr/bin/env bash
# Idle CPU, memory and new-file pickup of an agent watching many files
# (tests/tests/many_files.rs), release build, against moto_server.
#   scripts/many_files.sh [files] [idle seconds]   (default: 1000 files, 60 s)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p tailrace-agent --bins
MANY_FILES=${1:-1000} MANY_IDLE_SECS=${2:-60} \
  cargo test --release -q -p tailrace-tests --test many_files -- --ignored --nocapture
