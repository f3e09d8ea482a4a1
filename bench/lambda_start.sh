#!/usr/bin/env bash
# The aggregator Lambda's start, measured under `cargo lambda watch` (#14):
# from the bootstrap process's start to its first event handled, with the
# SDK clients built and the metadata file loaded from S3 (moto_server).
#   bench/lambda_start.sh [runs]        (default 15)
# Each run starts a fresh `bootstrap` (release build; TAILRACE_BOOTSTRAP to
# use another) against the runtime API of one `cargo lambda watch
# --only-lambda-apis`, and sends it one Kinesis event of one record at once
# through the watch's Invoke API. It prints, per run and as min/median/max:
#   start -> "metadata loaded"  (the JSON log line's own time stamp)
#   start -> response received  (the invoke answered; the record's one line
#                                does not parse, so only health metrics are published)
#   the process's peak RSS (VmHWM) after the event
# and the binary's size, whole and stripped. Needs moto_server, cargo-lambda,
# curl and python3. SKIP_BUILD=1 uses the bootstrap already built.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-15}
target=${CARGO_TARGET_DIR:-$PWD/target}
boot=${TAILRACE_BOOTSTRAP:-$target/release/bootstrap}
if [ -z "${SKIP_BUILD:-}" ] && [ -z "${TAILRACE_BOOTSTRAP:-}" ]; then
  cargo build --release -q -p tailrace-aggregator --bin bootstrap
fi
[ -x "$boot" ] || { echo "no bootstrap at $boot" >&2; exit 1; }

work=$(mktemp -d)
echo "work: $work" >&2
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1 ($2)" >&2
  exit 1
}

moto_port=$(free_port)
moto_server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
pids+=($!)
wait_port "$moto_port" moto_server
moto=http://127.0.0.1:$moto_port
curl -sf -X PUT "$moto/tailrace-meta" >/dev/null
# -T, without `Expect: 100-continue` (moto's server stored an empty body for it).
curl -sf -H 'Expect:' -T scripts/demo-metadata.csv "$moto/tailrace-meta/metadata.csv" >/dev/null

watch_port=$(free_port)
(cd aggregator-lambda && exec cargo-lambda lambda watch --only-lambda-apis --timeout 30 \
  -A 127.0.0.1 -P "$watch_port") >"$work/watch.log" 2>&1 &
pids+=($!)
wait_port "$watch_port" "cargo lambda watch"

# One Kinesis record whose data is one raw line that does not parse (a
# rejected line): the handler serves the metadata first, whatever the
# records hold, and publishes only its health metrics.
cat >"$work/event.json" <<'EOF'
{"Records":[{"eventSource":"aws:kinesis","eventSourceARN":"arn:aws:kinesis:us-east-1:123456789012:stream/bench",
"eventID":"shardId-000000000000:1","eventName":"aws:kinesis:record","eventVersion":"1.0",
"awsRegion":"us-east-1","invokeIdentityArn":"arn:aws:iam::123456789012:role/bench",
"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"p","sequenceNumber":"1",
"approximateArrivalTimestamp":1764676800.0,"data":"bm90IGEgcmVjb3Jk"}}]}
EOF

echo "bootstrap: $boot ($(stat -c %s "$boot") bytes; stripped: $(strip -o "$work/stripped" "$boot" && stat -c %s "$work/stripped") bytes)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%4s %22s %22s %14s\n' run 'start->metadata (ms)' 'start->response (ms)' 'VmHWM (KiB)'
results=$work/results
: >"$results"
for run in $(seq 1 "$runs"); do
  log=$work/boot-$run.log
  env -i PATH="$PATH" HOME="$HOME" \
    AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$watch_port/.rt/bootstrap" \
    AWS_LAMBDA_FUNCTION_NAME=bootstrap AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256 \
    AWS_LAMBDA_FUNCTION_VERSION='$LATEST' AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/tailrace \
    AWS_LAMBDA_LOG_STREAM_NAME=bench AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
    AWS_ENDPOINT_URL="$moto" TAILRACE_METADATA=s3://tailrace-meta/metadata.csv \
    TAILRACE_NAMESPACE=Bench/Start \
    bash -c 'date +%s%N >"$0"; exec "$1"' "$work/t0-$run" "$boot" >"$log" 2>&1 &
  boot_pid=$!
  curl -sf --max-time 30 -X POST --data-binary @"$work/event.json" \
    "http://127.0.0.1:$watch_port/2015-03-31/functions/bootstrap/invocations" >"$work/resp-$run.json"
  t_resp=$(date +%s%N)
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$boot_pid/status" 2>/dev/null || echo '?')
  kill "$boot_pid" 2>/dev/null || true
  wait "$boot_pid" 2>/dev/null || true
  python3 - "$work/t0-$run" "$log" "$t_resp" "$hwm" "$run" >>"$results" <<'PY'
import datetime, json, sys
t0 = int(open(sys.argv[1]).read()) / 1e6
loaded = None
for line in open(sys.argv[2]):
    try:
        rec = json.loads(line)
    except ValueError:
        continue
    if rec.get("message") == "metadata loaded":
        ts = datetime.datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00"))
        loaded = ts.timestamp() * 1e3
        break
if loaded is None:
    sys.exit(f"run {sys.argv[5]}: no 'metadata loaded' line in {sys.argv[2]}")
print(f"{sys.argv[5]} {loaded - t0:.1f} {int(sys.argv[3]) / 1e6 - t0:.1f} {sys.argv[4]}")
PY
  tail -n1 "$results" | awk '{printf "%4s %22s %22s %14s\n", $1, $2, $3, $4}'
done
python3 - "$results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
for col, name in ((1, "start -> metadata loaded"), (2, "start -> response")):
    v = sorted(float(r[col]) for r in rows)
    print(f"{name}: min {v[0]:.1f} ms, median {statistics.median(v):.1f} ms, max {v[-1]:.1f} ms ({len(v)} runs)")
hwm = sorted(int(r[3]) for r in rows if r[3].isdigit())
if hwm:
    print(f"VmHWM: {hwm[0]}-{hwm[-1]} KiB")
PY
