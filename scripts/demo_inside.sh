#!/usr/bin/env bash
# scripts/demo_inside.sh — run by demo.sh under `mirrord-testpod run`, which exports the
# MIRRORD_TEST_* variables describing the demo cluster. Shows the pod from inside and outside,
# then a local app on the loopback-only laptop that lives in the pod under `mirrord exec`.
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
