#!/usr/bin/env bash
# scripts/demo_inside.sh — run by demo.sh under `mirrord-testpod run`, which exports the
# MIRRORD_TEST_* variables describing the demo cluster. Shows the pod from inside and outside,
# then a mirrord-agent serving that pod to a client over its protocol.
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
step "mirrord-agent --target-pid $MIRRORD_TEST_POD_PID: started, then stopped by its TTL"
"$ROOT/build/bin/mirrord-agent" --target-pid "$MIRRORD_TEST_POD_PID" --ttl 1 2>/dev/null
echo
echo "Next (issue 'layer + exec'): a local app under 'mirrord exec -t pid/$MIRRORD_TEST_POD_PID' sees all of the above."
