#!/usr/bin/env bash
# The load runs of docs/RELIABILITY.md and BENCHMARKS.md, against moto_server
# (pip install 'moto[server]>=5.2.5'); each prints samples as it goes and a
# report at the end, and exits non-zero on any lost or duplicated line.
#   scripts/load.sh soak   [minutes] [lines/s]     (30, 20000) rotating files, Kinesis faults every other minute, aggregate mode
#   scripts/load.sh outage [minutes] [lines/s]     (5, 5000)   Kinesis unreachable for the minutes given, raw mode
#   scripts/load.sh budget [minutes] [lines/s ...] (10, 1000 10000 50000) the host budget: CPU share and RSS per rate, with wc -l as the floor
# The agent is a release build; the harness too, unless TESTS_DEBUG=1 (a
# debug harness against the release agent: no release build of the AWS SDK
# for the tests). SKIP_BUILD=1 uses what target/release already holds.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-}
shift || true
case "$what" in
  soak)
    export SOAK_SECS=$(( ${1:-30} * 60 )) SOAK_RATE=${2:-20000} ;;
  outage)
    export OUTAGE_SECS=$(( ${1:-5} * 60 )) OUTAGE_RATE=${2:-5000} ;;
  budget)
    export BUDGET_SECS=$(( ${1:-10} * 60 ))
    shift || true
    rates="$*"
    export BUDGET_RATES=${rates:+${rates// /,}}
    [ -n "$BUDGET_RATES" ] || unset BUDGET_RATES ;;
  *)
    sed -n '2,11p' "$0" >&2
    exit 2 ;;
esac
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p tailrace-agent --bins
if [ -n "${TESTS_DEBUG:-}" ]; then
  TAILRACE_BIN_DIR=${CARGO_TARGET_DIR:-$PWD/target}/release cargo test -q --workspace --test "$what" -- --ignored --nocapture
else
  cargo test --release -q --workspace --test "$what" -- --ignored --nocapture
fi
