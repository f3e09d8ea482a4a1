#!/usr/bin/env bash
# Where `tailrace replay`'s peak memory goes (#14: peak RSS under 25 MiB in
# both modes, a backfill of rotated files whose hours overlap included).
#   bench/memory.sh            (LINES=500000 per file, FILES=4 for the backfill)
# Three replays against a local tailrace-sink-kinesis, each measured twice:
# peak RSS with /usr/bin/time, and the heap with heaptrack (peak heap, and the
# call sites holding most of it at the peak):
#   raw        one file, mode raw
#   aggregate  the same file, mode aggregate
#   backfill   FILES files of the same hours (one rotation each, overlapping
#              event times: windows reopen, late partials), mode aggregate
# Needs heaptrack (Debian's heaptrack package) and the release binaries
# (cargo build --release -p tailrace-agent -p tailrace-bench --no-default-features).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
LINES=${LINES:-500000}
FILES=${FILES:-4}
START=${START:-1795600000}
W=$(mktemp -d /tmp/tailrace-memory.XXXXXX)
SINK=
cleanup() {
  local rc=$?
  [[ -n "$SINK" ]] && kill "$SINK" 2>/dev/null
  if [[ $rc != 0 || -n "${KEEP:-}" ]]; then echo "exit $rc; work directory kept: $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
command -v heaptrack >/dev/null || { echo "heaptrack is missing (apt-get install heaptrack)" >&2; exit 1; }
LOGFORMAT='%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D'
mkdir -p "$W/logs"
for i in $(seq 1 "$FILES"); do
  "$BIN/tailrace-genlog" --lines "$LINES" --clients 5000 --format combined_d --rate 1000 \
    --seed "$i" --start "$START" --output "$W/logs/access.log.$i" >/dev/null
done

"$BIN/tailrace-sink-kinesis" --port-file "$W/port" >/dev/null 2>"$W/sink.log" &
SINK=$!
for _ in $(seq 100); do [[ -s "$W/port" ]] && break; sleep 0.05; done
PORT=$(cat "$W/port")
export AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

config() {
  cat >"$W/$1.yaml" <<EOF
state_dir: $W/state-$1
host_id: bench-host
shutdown_timeout: 120s
aws:
  region: us-east-1
  endpoint_url: http://127.0.0.1:$PORT
flows:
  - name: web
    paths: ["$W/logs/none"]
    format: '$LOGFORMAT'
    start_at: beginning
    stream: bench
    mode: $2
    window: 5m
EOF
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $LINES lines per file ($(stat -c %s "$W/logs/access.log.1") bytes)"
printf '%-10s %14s %14s %14s %14s\n' run 'peak RSS MiB' 'peak heap' 'anon RSS MiB' 'file RSS MiB'
one() {
  local name=$1 mode=$2; shift 2
  config "$name" "$mode"
  rm -rf "$W/state-$name"
  /usr/bin/time -f '%M' -o "$W/$name.rss" "$BIN/tailrace" replay --config "$W/$name.yaml" "$@" >/dev/null 2>"$W/$name.log" &
  local timer=$! pid=
  # The replay's own RSS, anonymous (heap, stacks, arenas) and file-backed
  # (the binary's pages), at its highest, sampled every 20 ms.
  local anon=0 filed=0
  while kill -0 "$timer" 2>/dev/null; do
    pid=${pid:-$(pgrep -P "$timer" -x tailrace || true)}
    if [[ -n "$pid" && -r /proc/$pid/status ]]; then
      read -r a f < <(awk '/^RssAnon:/ {a=$2} /^RssFile:/ {f=$2} END {print a+0, f+0}' "/proc/$pid/status" 2>/dev/null || echo "0 0")
      (( a > anon )) && anon=$a
      (( f > filed )) && filed=$f
    fi
    sleep 0.02
  done
  wait "$timer"
  rm -rf "$W/state-$name"
  heaptrack -o "$W/$name.heap" "$BIN/tailrace" replay --config "$W/$name.yaml" "$@" >/dev/null 2>>"$W/$name.log"
  local file; file=$(ls "$W/$name".heap*)
  heaptrack_print --print-peaks 1 --print-allocators 0 --print-temporary 0 --print-leaks 0 \
    --peak-limit 4 "$file" >"$W/$name.peaks" 2>/dev/null || true
  local peak; peak=$(heaptrack_print "$file" 2>/dev/null | sed -n 's/^peak heap memory consumption: //p')
  printf '%-10s %14.1f %14s %14.1f %14.1f\n' "$name" "$(awk '{print $1/1024}' "$W/$name.rss")" "$peak" \
    "$(awk -v k="$anon" 'BEGIN {print k/1024}')" "$(awk -v k="$filed" 'BEGIN {print k/1024}')"
  # The call sites holding most at the peak: each one's size and the first
  # frames in the program's own code or its dependencies (not std's alloc).
  awk '/peak memory consumed over/ {if (n++ >= 4) exit; print "    " $1 " at the peak:"; shown=0; next}
       n && /^ *[^ ].*/ && !/^ *at / && shown < 3 && !/alloc::|core::|std::|hashbrown::raw|RawVec|__rust|<alloc/ {
         sub(/^ +/, ""); print "        " substr($0, 1, 150); shown++ }' "$W/$name.peaks"
  cp "$W/$name.peaks" "${KEEP_PEAKS:-/tmp}/tailrace-memory-$name.peaks" 2>/dev/null || true
}
one raw raw "$W/logs/access.log.1"
one aggregate aggregate "$W/logs/access.log.1"
files=()
for i in $(seq 1 "$FILES"); do files+=("$W/logs/access.log.$i"); done
one backfill aggregate "${files[@]}"
