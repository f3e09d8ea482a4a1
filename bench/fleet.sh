#!/usr/bin/env bash
# Fleet simulation: N simulated hosts' records through the aggregator's
# handler (tailrace-fleet, release build), as BENCHMARKS.md reports it.
#
# Usage: bench/fleet.sh [tailrace-fleet options]   e.g. --hosts 2000 --publish moto
#   SKIP_BUILD=1   use target/release/tailrace-fleet as it is
# `tailrace-fleet --help` lists the options (fleet shape, shares of raw-mode,
# Kinesis Agent and late records, batch size, --publish none|moto).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    echo "== building tailrace-fleet (release)" >&2
    (cd "$ROOT" && cargo build --release -p tailrace-bench --bin tailrace-fleet)
fi
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- . || echo ' (modified)')"
echo "command: bench/fleet.sh $*"
echo
/usr/bin/time -f 'tailrace-fleet: %e s wall, %U s user, %S s sys, max RSS %M KiB' \
    "$ROOT/target/release/tailrace-fleet" "$@"
