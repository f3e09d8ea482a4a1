#!/usr/bin/env bash
# Makes the logformat seed corpora from a real Apache: starts apache2 on
# 127.0.0.1 with one log per format of tailrace_logformat::fuzzing::PARSE_FORMATS,
# sends ordinary and odd requests (404, HEAD, headers, quotes in the path, a
# TLS probe, a bare request line, an idle connection that times out with 408),
# and writes each distinct log line as one seed file.
# Usage: fuzz/seeds/apache.sh   (from anywhere; needs apache2 and curl)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'kill "$(cat "$work/pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"' EXIT
port=18741
mods=/usr/lib/apache2/modules
mkdir -p "$work/htdocs" && echo hello >"$work/htdocs/index.html"
cat >"$work/httpd.conf" <<CONF
ServerRoot "$work"
Listen 127.0.0.1:$port
ServerName seeds.test
PidFile "$work/pid"
ErrorLog "$work/error.log"
DocumentRoot "$work/htdocs"
Timeout 2
RequestReadTimeout header=1 body=1
LoadModule mpm_event_module $mods/mod_mpm_event.so
LoadModule authz_core_module $mods/mod_authz_core.so
LoadModule reqtimeout_module $mods/mod_reqtimeout.so
LoadModule mime_module $mods/mod_mime.so
LoadModule dir_module $mods/mod_dir.so
TypesConfig /etc/mime.types
LogFormat "%h %l %u %t \"%r\" %>s %b" common
LogFormat "%h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-agent}i\"" combined
LogFormat "%v:%p %h %l %u %t \"%r\" %>s %O \"%{Referer}i\" \"%{User-Agent}i\"" vhost_combined
LogFormat "%a %{X-Forwarded-For}i %l %u [%{%d/%b/%Y:%H:%M:%S}t.%{msec_frac}t %{%z}t] \"%r\" %>s %b %D %T %{ms}T \"%{Referer}i\" \"%{User-Agent}i\" %{end:usec}t %X" house
LogFormat "%{Host}i%U%q %h%l %>s %B %{us}T %{%F %T}t%{%z}t %{sec}t" adjacent
CustomLog "$work/common.log" common
CustomLog "$work/combined.log" combined
CustomLog "$work/vhost_combined.log" vhost_combined
CustomLog "$work/house.log" house
CustomLog "$work/adjacent.log" adjacent
CONF
apache2 -f "$work/httpd.conf" -k start
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
base="http://127.0.0.1:$port"
curl -s -o /dev/null "$base/index.html?q=1&r=%22x%22"
curl -s -o /dev/null -H 'Referer: http://example.com/start.html' -A 'Mozilla/5.0 (X11; Linux x86_64) "quoted"' -H 'X-Forwarded-For: 203.0.113.7, 10.0.0.1' "$base/missing"
curl -s -o /dev/null -I "$base/"
curl -s -o /dev/null -X POST --data 'a=b' "$base/index.html"
curl -s -o /dev/null -g "http://[::1]:$port/" 2>/dev/null || true
python3 - "$port" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
def send(data, wait=0.3):
    s = socket.create_connection(("127.0.0.1", port))
    if data:
        s.sendall(data)
    time.sleep(wait)
    try:
        s.recv(65536)
    except OSError:
        pass
    s.close()
send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n")
send(b"GET /a\"b\\c HTTP/1.1\r\nHost: x\r\nUser-Agent: \xc3\xa9t\xe9\r\n\r\n")
send(b"GET /\r\n\r\n")
send(b"", wait=2.5)
PY
sleep 1
apache2 -f "$work/httpd.conf" -k stop
sleep 1
n=0
for f in common combined vhost_combined house adjacent; do
  while IFS= read -r line || [ -n "$line" ]; do
    sum=$(printf '%s' "$line" | sha1sum | cut -c1-16)
    printf '%s' "$line" >"$here/corpus/logformat_parse/$f-$sum"
    n=$((n + 1))
  done <"$work/$f.log"
done
echo "wrote $n seeds to $here/corpus/logformat_parse"
