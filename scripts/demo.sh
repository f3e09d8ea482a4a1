#!/usr/bin/env bash
# `make demo`: the whole tailrace pipeline on this machine, then the table.
#
#   Apache httpd (127.0.0.1, traffic from several loopback client addresses)
#     -> tailrace agent (aggregate mode, 5-minute windows)
#     -> Kinesis (moto_server on 127.0.0.1)
#     -> tailrace-aggregator consume (joins clients with the S3 metadata file)
#     -> CloudWatch (moto_server) -> the per-window table below
#     -> the per-application alarm and the unknown-sources alarm (their
#        state set here: moto evaluates no alarm) -> SNS alarm topic ->
#        tailrace-aggregator notify (what the Lambda does with the SNS event:
#        totals from CloudWatch, top addresses from the client tallies, who
#        is behind them from EC2) -> SNS notification topic -> SQS "inbox"
#        -> the two messages a person receives, printed last.
#
# Without Apache installed, a generated access log stands in for it.
# Every process started here is stopped on exit; the work directory is
# removed unless KEEP=1.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/tailrace-demo.XXXXXX)
chmod 755 "$WORK"
PIDS=()
APACHE_PID_FILE="$WORK/httpd.pid"

say() { printf '\n== %s\n' "$*"; }

cleanup() {
  set +e
  if [ -f "$APACHE_PID_FILE" ]; then kill "$(cat "$APACHE_PID_FILE")" 2>/dev/null; fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 200); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2; return 1
}

say "building tailrace (cargo build --workspace --bins)"
cd "$ROOT"
cargo build --workspace --bins --quiet
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"

if ! command -v moto_server >/dev/null 2>&1; then
  say "installing the local AWS emulator (pip install 'moto[server]>=5.2.5')"
  python3 -m pip install -q 'moto[server]>=5.2.5'
fi

export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
MOTO_PORT=$(free_port)
ENDPOINT="http://127.0.0.1:$MOTO_PORT"
say "starting moto_server on $ENDPOINT (Kinesis, S3, CloudWatch, SNS, SQS)"
moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
wait_port "$MOTO_PORT"
python3 "$ROOT/scripts/demo_aws.py" setup --endpoint "$ENDPOINT" --metadata "$ROOT/scripts/demo-metadata.csv"
# Inventory (docs/INVENTORY.md): two tagged instances in moto's EC2 at the
# loopback addresses the traffic comes from; `inventory sync` writes their rows.
say "launching two tagged EC2 instances and an untagged one (moto) and syncing the metadata file (tailrace-aggregator inventory sync)"
python3 - "$ENDPOINT" <<'EOF'
import sys, boto3
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1")
ami = ec2.describe_images()["Images"][0]["ImageId"]
for ip, app, contact in [("127.0.0.2", "billing", "billing-oncall@example.com"), ("127.0.0.3", "search", "search-team@example.com")]:
    tags = [{"Key": "tailrace:application", "Value": app}, {"Key": "tailrace:contact", "Value": contact}]
    ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, PrivateIpAddress=ip, TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])
# An instance nobody tagged for tailrace: its traffic is "unknown", and the
# unknown-sources message names it.
ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, PrivateIpAddress="127.0.0.99",
                  TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "nightly-export"}]}])
EOF
"$BIN/tailrace-aggregator" inventory sync --metadata s3://tailrace-metadata/metadata.csv --endpoint-url "$ENDPOINT" 2>"$WORK/inventory.log" | sed 's/^/    /'
python3 -c 'import sys,boto3; sys.stdout.buffer.write(boto3.client("s3",endpoint_url=sys.argv[1],region_name="us-east-1").get_object(Bucket="tailrace-metadata",Key="metadata.csv")["Body"].read())' "$ENDPOINT" >"$WORK/metadata.csv"
echo "stream tailrace-demo, metadata s3://tailrace-metadata/metadata.csv:"
sed 's/^/    /' "$WORK/metadata.csv"

mkdir -p "$WORK/logs" "$WORK/www"
LOGFORMAT='%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D'
cat >"$WORK/tailrace.yaml" <<EOF
state_dir: $WORK/state
host_id: demo-host
aws:
  region: us-east-1
  endpoint_url: $ENDPOINT
flows:
  - name: web
    paths: ["$WORK/logs/access.log*"]
    format: '$LOGFORMAT'
    start_at: beginning
    stream: tailrace-demo
    mode: aggregate
    window: 5m
    service: checkout-web
EOF
"$BIN/tailrace" check --config "$WORK/tailrace.yaml"

say "starting the tailrace agent"
"$BIN/tailrace" run --config "$WORK/tailrace.yaml" 2>"$WORK/agent.log" &
AGENT=$!
PIDS+=($AGENT)

APACHE=/usr/sbin/apache2
if [ -x "$APACHE" ] && command -v curl >/dev/null 2>&1; then
  HTTP_PORT=$(free_port)
  say "starting Apache httpd on 127.0.0.1:$HTTP_PORT and sending traffic from several client addresses"
  echo "hello from tailrace's demo" >"$WORK/www/index.html"
  head -c 20000 /dev/zero | tr '\0' 'x' >"$WORK/www/report.csv"
  MODS=/usr/lib/apache2/modules
  USER_LINES=""
  if [ "$(id -u)" = 0 ]; then USER_LINES=$'User www-data\nGroup www-data'; fi
  cat >"$WORK/httpd.conf" <<EOF
ServerRoot "$WORK"
ServerName 127.0.0.1
Listen 127.0.0.1:$HTTP_PORT
PidFile "$APACHE_PID_FILE"
DefaultRuntimeDir "$WORK"
Mutex file:$WORK
LoadModule mpm_event_module $MODS/mod_mpm_event.so
LoadModule authz_core_module $MODS/mod_authz_core.so
LoadModule dir_module $MODS/mod_dir.so
LoadModule mime_module $MODS/mod_mime.so
LoadModule alias_module $MODS/mod_alias.so
$USER_LINES
TypesConfig /etc/mime.types
DocumentRoot "$WORK/www"
<Directory "$WORK/www">
  Require all granted
</Directory>
DirectoryIndex index.html
Redirect 503 /busy
ErrorLog "$WORK/logs/error.log"
LogFormat "${LOGFORMAT//\"/\\\"}" demo
CustomLog "$WORK/logs/access.log" demo
EOF
  "$APACHE" -f "$WORK/httpd.conf" -k start
  wait_port "$HTTP_PORT"
  URL="http://127.0.0.1:$HTTP_PORT"
  traffic() { # client-address count path
    for _ in $(seq "$2"); do curl -s -o /dev/null --interface "$1" "$URL$3" || true; done
  }
  traffic 127.0.0.2 120 /
  traffic 127.0.0.2 10 /busy
  traffic 127.0.0.3 80 /
  traffic 127.0.0.3 15 /no-such-page
  traffic 127.0.0.17 30 /report.csv
  traffic 127.0.0.18 20 /report.csv
  traffic 127.0.0.99 25 /
  traffic 127.0.0.1 5 /
  sleep 1
  kill "$(cat "$APACHE_PID_FILE")" 2>/dev/null || true
  rm -f "$APACHE_PID_FILE"
else
  say "Apache httpd not installed: writing a generated access log instead"
  python3 - "$WORK/logs/access.log" <<'EOF'
import sys, time
now = time.time()
clients = [("127.0.0.2", 130, 200), ("127.0.0.3", 95, 200), ("127.0.0.17", 30, 200),
           ("127.0.0.18", 20, 200), ("127.0.0.99", 25, 200), ("127.0.0.1", 5, 404)]
with open(sys.argv[1], "w") as f:
    i = 0
    for ip, n, status in clients:
        for _ in range(n):
            t = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now - 60 + i % 60))
            f.write('%s - - [%s] "GET /page/%d HTTP/1.1" %d %d "-" "demo/1.0" %d\n'
                    % (ip, t, i, status, 100 + i % 900, 200 + i * 37 % 5000))
            i += 1
EOF
fi
LINES=$(cat "$WORK"/logs/access.log* | wc -l)
echo "access log lines written: $LINES"

say "stopping the agent (SIGTERM flushes the open windows and waits for Kinesis)"
sleep 2
kill -TERM "$AGENT"
wait "$AGENT" || { echo "agent failed; its log:"; cat "$WORK/agent.log"; exit 1; }
grep -h "lines_read" "$WORK/agent.log" | sed 's/^/    /' || true

TALLIES=s3://tailrace-metadata/tallies/
say "running the aggregator over the stream (tailrace-aggregator consume)"
"$BIN/tailrace-aggregator" consume --stream tailrace-demo \
  --metadata s3://tailrace-metadata/metadata.csv --endpoint-url "$ENDPOINT" \
  --idempotency-table tailrace-demo-claims --tallies "$TALLIES" \
  --exit-when-idle 3s 2>"$WORK/aggregator.log"
grep -h "busiest\|who" "$WORK/aggregator.log" | head -5 | sed 's/^/    /' || true

say "requests by source application, read back from CloudWatch (namespace Tailrace)"
python3 "$ROOT/scripts/demo_aws.py" table --endpoint "$ENDPOINT" --metadata "$WORK/metadata.csv"

notify() { # which-alarm
  python3 "$ROOT/scripts/demo_aws.py" alarm --which "$1" --endpoint "$ENDPOINT" --out "$WORK/alarm-$1.json"
  "$BIN/tailrace-aggregator" notify "$WORK/alarm-$1.json" \
    --topic arn:aws:sns:us-east-1:123456789012:tailrace-notifications \
    --metadata s3://tailrace-metadata/metadata.csv --tallies "$TALLIES" \
    --endpoint-url "$ENDPOINT" 2>>"$WORK/notify.log" >/dev/null \
    || { echo "notifier failed; its log:"; cat "$WORK/notify.log"; exit 1; }
}
say "billing floods the service, and unknown sources send more than 20 requests: both alarms fire"
echo "alarms: more than 100 requests from one source application, more than 20 from unknown sources, in a 5-minute window"
notify app
notify unknown

say "the two notifications a person receives (SNS notification topic -> inbox)"
python3 "$ROOT/scripts/demo_aws.py" inbox --endpoint "$ENDPOINT"
