#!/usr/bin/env bash
# scripts/demo_inside.sh — run by demo.sh under `mirrord-testpod run`, which exports the
# MIRRORD_TEST_* variables describing the demo cluster. Shows the pod from inside and outside,
# then a local app on the loopback-only laptop that lives in the pod under `mirrord exec`, and a
# local HTTP server that gets the pod's incoming requests (mirror, then steal with an HTTP filter).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
pod() { nsenter -t "$MIRRORD_TEST_POD_PID" -n -m -p -u "$@"; }
step() { echo; echo "-- $*"; }

step "inside the pod (pid $MIRRORD_TEST_POD_PID, ip $MIRRORD_TEST_POD_IP): its own files"
pod cat /app/config.txt
pod ls -l /app
step "its own environment (/proc/$MIRRORD_TEST_POD_PID/environ)"
tr '\0' '\n' <"/proc/$MIRRORD_TEST_POD_PID/environ" | grep -E '^(MX_POD_ENV|DATABASE_URL)='
step "its resolv.conf and a name only its /etc/hosts knows"
pod cat /etc/resolv.conf
pod getent hosts pod-only-host
step "a cluster service by its short name (search domains + cluster DNS)"
pod getent ahostsv4 echo | head -1
pod /usr/bin/python3 -c "import urllib.request; print(urllib.request.urlopen('http://echo/hello.txt').read().decode().strip())"
step "the pod's HTTP server, called from a peer in the cluster"
nsenter -t "$MIRRORD_TEST_PEER_PID" -n curl -s "http://$MIRRORD_TEST_POD_IP:$MIRRORD_TEST_POD_HTTP_PORT/hello.txt"
step "the laptop (loopback only): the service is unreachable without mirrord"
nsenter -t "$MIRRORD_TEST_LAPTOP_PID" -n curl -sS -m 2 "http://$MIRRORD_TEST_SERVICE_IP/hello.txt" || true
step "a local app on the laptop, under 'mirrord exec -t pid/$MIRRORD_TEST_POD_PID': the pod's env, files, DNS and services"
APP=$(mktemp --suffix=.py)
trap 'rm -f "$APP"' EXIT
cat >"$APP" <<'PY'
import os, socket, urllib.request
print("env MX_POD_ENV       =", os.environ.get("MX_POD_ENV"))
print("file /app/config.txt =", open("/app/config.txt").read().strip())
print("dir /app             =", sorted(os.listdir("/app")))
print("DNS echo             =", socket.getaddrinfo("echo", 80, proto=socket.IPPROTO_TCP)[0][4][0])
print("DNS pod-only-host    =", socket.gethostbyname("pod-only-host"))
print("GET http://echo/hello.txt ->", urllib.request.urlopen("http://echo/hello.txt", timeout=5).read().decode().strip())
PY
laptop() { nsenter -t "$MIRRORD_TEST_LAPTOP_PID" -n "$@"; }
laptop "$ROOT/build/bin/mirrord" exec -t "pid/$MIRRORD_TEST_POD_PID" -- /usr/bin/python3 "$APP"
step "the same laptop, a shell pipeline under mirrord exec (children keep the pod context)"
laptop "$ROOT/build/bin/mirrord" exec -t "pid/$MIRRORD_TEST_POD_PID" -- bash -c 'cat /app/hello.txt; curl -sS http://echo/hello.txt'

# Incoming traffic: a local HTTP server on the laptop takes requests that reach the POD's port 80
# (it binds port 80 on the laptop; mirrord subscribes the pod's port 80 for it).
SRV=$(mktemp --suffix=.py)
LOG=$(mktemp)
FILTER=$(mktemp --suffix=.json)
trap 'rm -f "$APP" "$SRV" "$LOG" "$FILTER"' EXIT
cat >"$SRV" <<'PY'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"hello from the LAPTOP (%s)\n" % self.path.encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, fmt, *args):
        print("   local app saw:", self.command, self.path, "from", self.client_address[0], flush=True)
server = http.server.HTTPServer(("0.0.0.0", 80), H)
print("READY", flush=True)
server.serve_forever()
PY
cat >"$FILTER" <<'JSON'
{ "feature": { "network": { "incoming": { "mode": "steal", "http_filter": { "header_filter": "x-mirrord-user: me" } } } } }
JSON
peer_curl() { nsenter -t "$MIRRORD_TEST_PEER_PID" -n curl -sS -m 5 "$@"; }
start_local_server() {  # mirrord exec ARGS... -- the server, in the background; waits for READY
  : >"$LOG"
  # nsenter and mirrord exec both exec: $! is the server itself
  nsenter -t "$MIRRORD_TEST_LAPTOP_PID" -n "$ROOT/build/bin/mirrord" exec "$@" -t "pid/$MIRRORD_TEST_POD_PID" -- \
    /usr/bin/python3 "$SRV" >"$LOG" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do grep -q READY "$LOG" && return 0; sleep 0.1; done
  echo "the local server did not start:"; cat "$LOG"; exit 1
}
stop_local_server() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; grep 'local app saw' "$LOG" || true; }
URL="http://$MIRRORD_TEST_POD_IP/hello.txt"

step "mirror (mirrord's default): the pod answers its clients, the local server sees a copy of each request"
start_local_server
peer_curl "$URL?mirrored"
sleep 0.5
stop_local_server

step "steal with an HTTP filter: requests with 'x-mirrord-user: me' go to the laptop, the rest to the pod (one keep-alive connection)"
start_local_server -f "$FILTER"
peer_curl -H 'x-mirrord-user: me' "$URL?with-header" --next "$URL?without-header"
stop_local_server
step "after the session: the pod serves port 80 again, nothing left behind"
peer_curl "$URL"
