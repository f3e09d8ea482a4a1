#!/usr/bin/env bash
# The outage measurement of docs/RELIABILITY.md: Kinesis unreachable for
# minutes while lines keep coming, raw mode, against moto_server.
#   scripts/outage.sh [outage minutes] [lines/s]   (default: 5 minutes, 5000 lines/s)
# One minute of normal work before and of writing after; prints a sample
# every 10 s and a report at the end (also written to the test's directory
# under $TMPDIR); exits non-zero on loss, duplicates or memory that grew
# with the backlog. Needs moto_server (pip install 'moto[server]>=5.2.5') and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-5}
rate=${2:-5000}
cargo build --release -q -p tailrace-agent --bins
OUTAGE_SECS=$((minutes * 60)) OUTAGE_RATE=$rate \
  cargo test --release -q -p tailrace-tests --test outage -- --ignored --nocapture
