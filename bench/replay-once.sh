#!/usr/bin/env bash
# One `tailrace replay` of a kept bench/run.sh work directory, under a
# measuring command, against a fresh tailrace-sink-kinesis: for profiles and
# A/B comparisons of two agent builds on the same log.
#
# Usage: WORK=/tmp/dir bench/replay-once.sh raw|aggregate [PREFIX...]
#   WORK      a work directory made by `WORK=/tmp/dir bench/run.sh` (kept)
#   TAILRACE  the agent binary (default: target/release/tailrace)
#   PREFIX    e.g. `perf stat -e page-faults` or `/usr/bin/time -f '%U %S %M'`
# The replay's own output and the prefix's report go to $WORK/once-replay.log
# unless the prefix writes elsewhere (perf stat -o, time -o).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=${WORK:?set WORK to a kept bench/run.sh work directory}
MODE=${1:?raw or aggregate}; shift
BIN="$ROOT/target/release"
rm -f "$W/once.port"
"$BIN/tailrace-sink-kinesis" --port-file "$W/once.port" > "$W/once-sink.json" 2> "$W/once-sink.log" &
SINK=$!
trap 'kill "$SINK" 2>/dev/null || true' EXIT
for _ in $(seq 100); do [[ -s "$W/once.port" ]] && break; sleep 0.05; done
PORT=$(cat "$W/once.port")
sed "s#endpoint_url: .*#endpoint_url: http://127.0.0.1:$PORT#" "$W/tailrace-$MODE.yaml" > "$W/once-$MODE.yaml"
rm -rf "$W/state-$MODE"
export AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
"$@" "${TAILRACE:-$BIN/tailrace}" replay --config "$W/once-$MODE.yaml" "$W/logs/access.log" \
    > /dev/null 2> "$W/once-replay.log"
