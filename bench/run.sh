#!/usr/bin/env bash
# End-to-end benchmark of `tailrace replay`, raw vs aggregate, against a local
# PutRecords sink (tailrace-sink-kinesis), plus the "parsing alone" baselines.
#
# Usage: bench/run.sh            (from anywhere; defaults below)
# Environment:
#   LINES=2000000 CLIENTS=5000 FORMAT=combined_d RATE=1000 SEED=1 WINDOW=5m
#   SHAPE=web       (web | service: short service-to-service lines |
#                    browser: long browser lines with escaped quotes)
#   START=<unix secs> (event time of the first line; default: now minus LINES/RATE)
#   WORK=/tmp/dir   (kept; default: a fresh temp dir, removed unless KEEP=1)
#   SKIP_BUILD=1    (use the binaries already in target/release, or in BIN)
#   BIN=/dir        (where the binaries are: for an A/B of two builds; implies
#                    nothing about building, so set SKIP_BUILD=1 with it)
#   PARSE_JSON=1    (also time `tailrace parse ... > /dev/null`)
set -euo pipefail

LINES=${LINES:-2000000}
CLIENTS=${CLIENTS:-5000}
FORMAT=${FORMAT:-combined_d}
RATE=${RATE:-1000}
SEED=${SEED:-1}
SHAPE=${SHAPE:-web}
START=${START:-}
WINDOW=${WINDOW:-5m}
KEEP=${KEEP:-0}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release}
if [[ -z "${WORK:-}" ]]; then
    WORK=$(mktemp -d /tmp/tailrace-bench.XXXXXX)
else
    mkdir -p "$WORK"
    KEEP=1
fi

SINK_PID=
cleanup() {
    if [[ -n "$SINK_PID" ]]; then kill "$SINK_PID" 2>/dev/null || true; fi
    if [[ "$KEEP" != 1 ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

case "$FORMAT" in
    combined) LOGFORMAT='%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"' ;;
    combined_d) LOGFORMAT='%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D' ;;
    *) echo "FORMAT must be combined or combined_d" >&2; exit 2 ;;
esac

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    echo "== building release binaries" >&2
    # --no-default-features: the bench crate's `fleet` feature (tailrace-fleet)
    # would add the aggregator's AWS SDK crates to this build.
    (cd "$ROOT" && cargo build --release -p tailrace-agent -p tailrace-bench --no-default-features)
fi

if [[ ! -x /usr/bin/time ]]; then
    echo "== installing GNU time" >&2
    SUDO=; [[ $(id -u) != 0 ]] && SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq time
fi

export AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export TAILRACE_LOG=${TAILRACE_LOG:-info}

LOG="$WORK/logs/access.log"
mkdir -p "$WORK/logs"
echo "== generating $LINES lines ($CLIENTS clients, $FORMAT, shape $SHAPE) in $LOG" >&2
/usr/bin/time -f '%e' -o "$WORK/genlog.time" \
    "$BIN/tailrace-genlog" --lines "$LINES" --clients "$CLIENTS" --format "$FORMAT" \
    --rate "$RATE" --seed "$SEED" --shape "$SHAPE" ${START:+--start "$START"} --output "$LOG"
# Read it once so every run below starts with the file in the page cache.
cat "$LOG" > /dev/null

# The floor every ratio below is taken against: `wc -l` reads the same file
# and finds its newlines, nothing else. It takes a few hundredths of a second,
# near the 10 ms resolution of /usr/bin/time, so it runs 10 times in one
# measurement and the table shows a tenth of it.
echo "== wc -l (reference, 10 runs)" >&2
/usr/bin/time -v -o "$WORK/wc.time" \
    sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do wc -l "$1"; done' sh "$LOG" > "$WORK/wc.out"

# Parsing alone (and parsing + in-memory aggregation), no I/O beyond reading.
echo "== parse-only" >&2
/usr/bin/time -v -o "$WORK/parse.time" \
    "$BIN/tailrace-parse-only" --format "$LOGFORMAT" "$LOG" > "$WORK/parse.json"
/usr/bin/time -v -o "$WORK/parse_agg.time" \
    "$BIN/tailrace-parse-only" --aggregate 300 --format "$LOGFORMAT" "$LOG" > "$WORK/parse_agg.json"
if [[ "${PARSE_JSON:-0}" == 1 ]]; then
    echo "== tailrace parse (JSON to /dev/null)" >&2
    /usr/bin/time -v -o "$WORK/parse_json.time" \
        "$BIN/tailrace" parse --format "$LOGFORMAT" "$LOG" > /dev/null
fi

run_mode() {
    local mode=$1
    local port_file="$WORK/sink-$mode.port"
    rm -f "$port_file"
    "$BIN/tailrace-sink-kinesis" --port-file "$port_file" \
        > "$WORK/sink-$mode.json" 2> "$WORK/sink-$mode.log" &
    SINK_PID=$!
    for _ in $(seq 100); do [[ -s "$port_file" ]] && break; sleep 0.05; done
    [[ -s "$port_file" ]] || { echo "sink did not start" >&2; cat "$WORK/sink-$mode.log" >&2; exit 1; }
    local port; port=$(cat "$port_file")
    rm -rf "$WORK/state-$mode"
    cat > "$WORK/tailrace-$mode.yaml" <<EOF
state_dir: $WORK/state-$mode
host_id: bench-host
shutdown_timeout: 120s
aws:
  region: us-east-1
  endpoint_url: http://127.0.0.1:$port
flows:
  - name: web
    paths: ["$WORK/logs/access.log"]
    format: '$LOGFORMAT'
    start_at: beginning
    stream: bench
    mode: $mode
    window: $WINDOW
EOF
    echo "== replay, mode: $mode (sink on port $port)" >&2
    local rc=0
    /usr/bin/time -v -o "$WORK/replay-$mode.time" \
        "$BIN/tailrace" replay --config "$WORK/tailrace-$mode.yaml" "$LOG" \
        > "$WORK/replay-$mode.out" 2> "$WORK/replay-$mode.log" || rc=$?
    echo "$rc" > "$WORK/replay-$mode.rc"
    if [[ $rc != 0 ]]; then
        echo "!! tailrace replay ($mode) exited $rc; last lines of its log:" >&2
        tail -n 20 "$WORK/replay-$mode.log" >&2
    fi
    # The sink's own CPU (user+sys clock ticks), read before it exits.
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' \
        "/proc/$SINK_PID/stat" > "$WORK/sink-$mode.cpu" 2>/dev/null || true
    kill -TERM "$SINK_PID"
    wait "$SINK_PID" || true
    SINK_PID=
}

run_mode raw
run_mode aggregate

echo "== results (work dir: $WORK)" >&2
python3 - "$WORK" "$LINES" "$FORMAT" "$CLIENTS" "$SHAPE" <<'PY'
import json, os, re, sys

work, lines, fmt, clients, shape = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
size = os.path.getsize(os.path.join(work, "logs/access.log"))

def gnu_time(name):
    path = os.path.join(work, name)
    if not os.path.exists(path):
        return None
    t = {}
    for line in open(path):
        k, _, v = line.strip().rpartition(": ")
        t[k] = v
    def clock(s):
        secs = 0.0
        for part in s.split(":"):
            secs = secs * 60 + float(part)
        return secs
    per = 10 if name == "wc.time" else 1
    return {
        "wall": clock(t["Elapsed (wall clock) time (h:mm:ss or m:ss)"]) / per,
        "cpu": (float(t["User time (seconds)"]) + float(t["System time (seconds)"])) / per,
        "user": float(t["User time (seconds)"]) / per,
        "sys": float(t["System time (seconds)"]) / per,
        "rss_mib": int(t["Maximum resident set size (kbytes)"]) / 1024,
        "exit": int(t.get("Exit status", "0")),
    }

def load_json(name):
    try:
        with open(os.path.join(work, name)) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None

gen = open(os.path.join(work, "genlog.time")).read().strip().splitlines()[-1]
print(f"input: {lines:,} lines, {size:,} bytes ({size/1e6:.1f} MB), {clients} clients, format {fmt}, shape {shape}; generated in {gen} s")
print()
rows = [("wc -l (reference; 1/10 of 10 runs)", "wc.time"), ("parse-only", "parse.time"), ("parse+agg in-memory", "parse_agg.time")]
if os.path.exists(os.path.join(work, "parse_json.time")):
    rows.append(("tailrace parse >/dev/null", "parse_json.time"))
rows += [("replay raw", "replay-raw.time"), ("replay aggregate", "replay-aggregate.time")]
wc = gnu_time("wc.time")
wc_cpu = max(wc["cpu"], 0.001) if wc else None
print(f"| run | wall s | lines/s | MB/s | CPU s (user+sys) | CPU s / GB | CPU / `wc -l` | peak RSS MiB | exit |")
print(f"|---|---:|---:|---:|---:|---:|---:|---:|---:|")
res = {}
for label, name in rows:
    t = gnu_time(name)
    if t is None:
        continue
    res[label] = t
    print(f"| {label} | {t['wall']:.2f} | {lines/t['wall']:,.0f} | {size/1e6/t['wall']:.1f} | "
          f"{t['cpu']:.3f} ({t['user']:.3f}+{t['sys']:.3f}) | {t['cpu']/(size/1e9):.2f} | "
          f"{(t['cpu']/wc_cpu if wc_cpu else float('nan')):.1f}x | {t['rss_mib']:.1f} | {t['exit']} |")
print()
print("| mode | PutRecords calls | records | data bytes | key bytes | records / M lines | bytes (data+key) / M lines | HTTP body bytes / M lines | lines accounted for | sink CPU s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
sinks = {}
def sink_cpu(mode):
    try:
        return open(os.path.join(work, f"sink-{mode}.cpu")).read().strip()
    except OSError:
        return "?"
for mode in ("raw", "aggregate"):
    s = load_json(f"sink-{mode}.json")
    if s is None:
        print(f"| {mode} | sink stats missing | | | | | | | | |")
        continue
    sinks[mode] = s
    per_m = 1e6 / lines
    seen = s["raw_lines"] if mode == "raw" else s["partial_requests"] + s["partial_rejected_lines"]
    print(f"| {mode} | {s['put_records_calls']:,} | {s['records']:,} | {s['data_bytes']:,} | {s['partition_key_bytes']:,} | "
          f"{s['records']*per_m:,.1f} | {(s['data_bytes']+s['partition_key_bytes'])*per_m:,.0f} | {s['http_body_bytes']*per_m:,.0f} | {seen:,} | {sink_cpu(mode)} |")
if "raw" in sinks and "aggregate" in sinks:
    r, a = sinks["raw"], sinks["aggregate"]
    rb, ab = r["data_bytes"] + r["partition_key_bytes"], a["data_bytes"] + a["partition_key_bytes"]
    print()
    if ab:
        print(f"bytes raw/aggregate: {rb/ab:.1f}x fewer; records raw/aggregate: {r['records']/max(a['records'],1):.1f}x fewer")
    print(f"aggregate: {a['partial_records']} partial records, {a['partial_groups']:,} client groups, "
          f"{a['partial_late_records']} late records, {a['undecodable_records']} undecodable, "
          f"windows: {len(a['partial_requests_per_window'])}")
if "parse-only" in res and "replay aggregate" in res:
    p, ag, raw = res["parse-only"]["cpu"], res["replay aggregate"]["cpu"], res.get("replay raw", {}).get("cpu")
    print(f"CPU replay aggregate / parse-only: {ag/p:.2f}x (+{(ag/p-1)*100:.0f}%)")
    if raw:
        print(f"CPU replay aggregate / replay raw: {ag/raw:.2f}x ({(ag/raw-1)*100:+.0f}%)")
    pa = res.get("parse+agg in-memory", {}).get("cpu")
    if pa:
        print(f"CPU parse+agg in-memory / parse-only: {pa/p:.2f}x (+{(pa/p-1)*100:.0f}%)")
PY
