#!/usr/bin/env bash
# The soak of docs/RELIABILITY.md: sustained lines into rotating files with
# periodic Kinesis faults, in aggregate mode, against moto_server.
#   scripts/soak.sh [minutes] [lines/s]     (default: 30 minutes, 20000 lines/s)
# Prints a sample every 10 s and a report at the end (also written to the
# test's directory under $TMPDIR); exits non-zero on loss, duplicates or
# growing memory. Needs moto_server (pip install 'moto[server]>=5.2.5').
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-30}
rate=${2:-20000}
cargo build --release -q -p tailrace-agent --bins
SOAK_SECS=$((minutes * 60)) SOAK_RATE=$rate \
  cargo test --release -q -p tailrace-tests --test soak -- --ignored --nocapture
