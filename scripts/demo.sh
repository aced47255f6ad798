#!/usr/bin/env bash
# scripts/demo.sh — the main job: install, build, check a CodeNOW-style mirrord.json with
# `mirrord verify-config`, create a demo pod with the test harness (namespaces, no Docker), show
# what lives inside it and what a loopback-only laptop cannot reach, then run a local app on that
# laptop under `mirrord exec -t pid/<pod>`: it sees the pod's env and files and reaches its services;
# then a local HTTP server gets the pod's incoming requests (mirrored, then stolen with an HTTP filter).
# Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
if [[ $(id -u) -ne 0 ]]; then
  echo "demo.sh: run as root (it builds network, mount and pid namespaces)" >&2
  exit 1
fi
"$ROOT/scripts/setup.sh"
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
echo "== building (build/)"
cmake -S "$ROOT" -B "$ROOT/build" "${GEN[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$ROOT/build" -j "$(nproc)" --target mirrord mirrord-agent mirrord_layer mirrord-testpod >/dev/null
echo "   built: build/bin/mirrord, build/bin/mirrord-agent, build/lib/libmirrord_layer.so"

echo
echo "== a CodeNOW-style mirrord.json, checked the way IDE extensions check it"
CFG=$(mktemp --suffix=.json)
trap 'rm -f "$CFG"' EXIT
cat >"$CFG" <<'JSON'
{
  "target": { "path": "deployment/orders", "namespace": "shop" },
  "agent": { "namespace": "shop-mirrord" },
  "feature": {
    "network": { "incoming": "mirror" },
    "fs": "read",
    "env": { "exclude": "DB_PASSWORD;API_KEY" }
  }
}
JSON
"$ROOT/build/bin/mirrord" verify-config --ide "$CFG"

echo
echo "== a demo pod (harness cluster: pod, cluster DNS, a service, a peer, a loopback-only laptop)"
"$ROOT/build/bin/mirrord-testpod" run -- bash "$ROOT/scripts/demo_inside.sh"
