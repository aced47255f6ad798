#!/usr/bin/env bash
# docker/kind-e2e.sh: the Kubernetes end-to-end scenarios of mirrord-native against a real kind
# cluster. Builds the agent image (docker/Dockerfile), creates a kind cluster (kind-config.yaml:
# one control plane, one worker), loads the images into it, applies docker/manifests/, waits for
# the pods, runs `build/bin/mirrord exec -t pod/... -n mirrord-e2e -- <check>` scenarios (env, a
# file read, outgoing to a cluster service, steal checked with wget from another pod, the
# deployment target, the ephemeral agent), then deletes the cluster.
#
# Where docker (with a reachable engine) or kind is missing it prints a loud SKIPPED line and
# exits 0 (1 with --require): it must never pretend to have passed.
#
# Usage: docker/kind-e2e.sh [--require] [--keep-cluster] [--no-build] [--cluster-name NAME]
#                           [--image IMAGE] [--mirrord PATH]
# Needs, besides docker and kind: kubectl, curl and a built mirrord CLI (build/bin/mirrord, or
# --mirrord / $MIRRORD). Exit status: 0 all scenarios passed (or skipped without --require),
# 1 a scenario failed or a prerequisite is missing, 2 usage error.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
NAMESPACE=mirrord-e2e
CLUSTER=mirrord-native-e2e
IMAGE=mirrord-native/agent:e2e
MIRRORD=${MIRRORD:-$ROOT/build/bin/mirrord}
REQUIRE=0
KEEP=0
BUILD=1
APP_IMAGES=(python:3.12-slim busybox:1.36)

usage() {
  sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --require) REQUIRE=1 ;;
    --keep-cluster) KEEP=1 ;;
    --no-build) BUILD=0 ;;
    --cluster-name) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; CLUSTER=$2; shift ;;
    --image) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; IMAGE=$2; shift ;;
    --mirrord) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; MIRRORD=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "kind-e2e.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

# ---------------------------------------------------------------- docker and kind, or SKIPPED
found=()
missing=()
if command -v docker >/dev/null 2>&1; then
  if docker info >/dev/null 2>&1; then
    found+=("docker $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?') at $(command -v docker)")
  else
    missing+=("a Docker engine (the docker CLI is at $(command -v docker) but 'docker info' fails)")
  fi
else
  missing+=("docker")
fi
if command -v kind >/dev/null 2>&1; then
  found+=("kind $(kind version 2>/dev/null | awk '{print $2}') at $(command -v kind)")
else
  missing+=("kind")
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  join() { local out="" item; for item in "$@"; do out+="${out:+; }$item"; done; echo "$out"; }
  found_text="nothing"
  missing_text=$(join "${missing[@]}")
  if [[ ${#found[@]} -gt 0 ]]; then found_text=$(join "${found[@]}"); fi
  echo "=================================================================================="
  echo "SKIPPED: kind e2e needs docker and kind (found: ${found_text}; missing: ${missing_text})"
  echo "         No Kubernetes scenario ran. Nothing was checked against a real cluster."
  echo "=================================================================================="
  if [[ $REQUIRE -eq 1 ]]; then
    echo "kind-e2e.sh: --require given: failing" >&2
    exit 1
  fi
  exit 0
fi

for tool in kubectl curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "kind-e2e.sh: docker and kind are here but '$tool' is not: install it (kubectl: https://kubernetes.io/docs/tasks/tools/)" >&2
    exit 1
  fi
done
if [[ ! -x "$MIRRORD" ]]; then
  echo "kind-e2e.sh: no mirrord CLI at $MIRRORD: build it (ninja -C build mirrord) or pass --mirrord PATH" >&2
  exit 1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mirrord-kind-e2e.XXXXXX")
export KUBECONFIG="$WORK/kubeconfig"
BACKGROUND_PID=""
CLUSTER_CREATED=0

cleanup() {
  local status=$?
  if [[ -n "$BACKGROUND_PID" ]] && kill -0 "$BACKGROUND_PID" 2>/dev/null; then
    kill "$BACKGROUND_PID" 2>/dev/null || true
    wait "$BACKGROUND_PID" 2>/dev/null || true
  fi
  if [[ $CLUSTER_CREATED -eq 1 ]]; then
    if [[ $KEEP -eq 1 ]]; then
      echo "kind-e2e.sh: keeping cluster '$CLUSTER' (KUBECONFIG=$KUBECONFIG); delete it with: kind delete cluster --name $CLUSTER"
    else
      echo "--- deleting cluster $CLUSTER"
      kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || echo "kind-e2e.sh: 'kind delete cluster --name $CLUSTER' failed" >&2
    fi
  fi
  if [[ $KEEP -eq 0 && $status -eq 0 ]]; then
    rm -rf "$WORK"
  else
    echo "kind-e2e.sh: logs and files kept in $WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { echo; echo "--- $*"; }

# ---------------------------------------------------------------- image, cluster, manifests
if [[ $BUILD -eq 1 ]]; then
  step "building $IMAGE from docker/Dockerfile"
  docker build -f "$HERE/Dockerfile" -t "$IMAGE" "$ROOT"
fi
docker image inspect "$IMAGE" >/dev/null
echo "agent image $IMAGE: $(docker image inspect "$IMAGE" --format '{{.Size}}') bytes"

step "creating kind cluster $CLUSTER"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  echo "kind-e2e.sh: a cluster named '$CLUSTER' already exists: delete it or pass --cluster-name" >&2
  exit 1
fi
CLUSTER_CREATED=1
kind create cluster --name "$CLUSTER" --config "$HERE/kind-config.yaml" --kubeconfig "$KUBECONFIG" --wait 180s

step "loading images into the cluster"
for image in "${APP_IMAGES[@]}"; do
  docker image inspect "$image" >/dev/null 2>&1 || docker pull "$image"
done
kind load docker-image --name "$CLUSTER" "$IMAGE" "${APP_IMAGES[@]}"

step "applying docker/manifests"
kubectl apply -f "$HERE/manifests/00-namespace.yaml"
kubectl apply -f "$HERE/manifests/"
kubectl -n "$NAMESPACE" wait --for=condition=Ready pod/mx-target pod/mx-echo pod/mx-client --timeout=180s
kubectl -n "$NAMESPACE" rollout status deployment/mx-target-deploy --timeout=180s
kubectl -n "$NAMESPACE" get pods -o wide

# ---------------------------------------------------------------- scenarios
passed=()
failed=()
pass() { echo "PASS: $1"; passed+=("$1"); }
fail() { echo "FAIL: $1"; failed+=("$1"); }

# mirrord exec with the e2e image and a bounded time; stdout only (its log goes to stderr).
mx() {
  timeout 180 "$MIRRORD" exec --agent-image "$IMAGE" -n "$NAMESPACE" "$@"
}

expect_output() {  # NAME EXPECTED mirrord-args... -- command...
  local name=$1 expected=$2 out
  shift 2
  if out=$(mx "$@" 2>"$WORK/$name.log"); then
    if [[ "$out" == "$expected" ]]; then
      pass "$name"
    else
      fail "$name: expected '$expected', got '$out' (log: $WORK/$name.log)"
      tail -20 "$WORK/$name.log" || true
    fi
  else
    fail "$name: mirrord exec exited $? (log: $WORK/$name.log)"
    tail -20 "$WORK/$name.log" || true
  fi
}

step "env: the target's environment"
expect_output env hello-from-pod -t pod/mx-target -- printenv MX_POD_ENV

step "files: a file read from the target's filesystem"
expect_output file-read "hello from the pod" -t pod/mx-target -- cat /app/hello.txt

step "outgoing: a cluster-only service, by its cluster DNS name, from the target's network"
expect_output outgoing "hello from the service" -t pod/mx-target -- \
  curl -fsS --max-time 10 "http://mx-echo.$NAMESPACE.svc.cluster.local/hello.txt"

step "deployment target"
expect_output deployment-env hello-from-deployment -t deployment/mx-target-deploy -- printenv MX_POD_ENV

step "ephemeral agent container"
expect_output ephemeral-env hello-from-pod -t pod/mx-target --ephemeral-container -- printenv MX_POD_ENV

step "steal: a request from another pod to the target's Service reaches the local app"
marker="stolen-by-local-$RANDOM$RANDOM"
mkdir -p "$WORK/www"
echo "$marker" > "$WORK/www/stolen.txt"
url="http://mx-target.$NAMESPACE.svc.cluster.local/stolen.txt"
mx -t pod/mx-target --steal -- python3 -m http.server 80 --bind 127.0.0.1 --directory "$WORK/www" \
  >"$WORK/steal.out" 2>"$WORK/steal.log" &
BACKGROUND_PID=$!
got=""
for _ in $(seq 1 60); do
  if ! kill -0 "$BACKGROUND_PID" 2>/dev/null; then break; fi
  got=$(kubectl -n "$NAMESPACE" exec mx-client -- wget -qO- -T 3 "$url" 2>/dev/null || true)
  if [[ "$got" == "$marker" ]]; then break; fi
  sleep 1
done
if [[ "$got" == "$marker" ]]; then
  pass steal
else
  fail "steal: wget from mx-client got '$got', not '$marker' (log: $WORK/steal.log)"
  tail -20 "$WORK/steal.log" || true
fi
kill "$BACKGROUND_PID" 2>/dev/null || true
wait "$BACKGROUND_PID" 2>/dev/null || true
BACKGROUND_PID=""
# After mirrord is gone the port goes back to the pod's own server.
back=""
for _ in $(seq 1 20); do
  back=$(kubectl -n "$NAMESPACE" exec mx-client -- wget -qO- -T 3 "http://mx-target.$NAMESPACE.svc.cluster.local/hello.txt" 2>/dev/null || true)
  if [[ "$back" == "hello from the pod" ]]; then break; fi
  sleep 1
done
if [[ "$back" == "hello from the pod" ]]; then
  pass "steal-released"
else
  fail "steal-released: after mirrord exited the pod's own server did not answer (got '$back')"
fi

step "agent pods left behind (the Jobs end after their ttl)"
kubectl -n "$NAMESPACE" get jobs,pods -l app=mirrord -o wide || true

echo
echo "=================================================================================="
echo "kind e2e: ${#passed[@]} passed, ${#failed[@]} failed"
for f in "${failed[@]}"; do echo "  FAIL: $f"; done
echo "=================================================================================="
[[ ${#failed[@]} -eq 0 ]]
