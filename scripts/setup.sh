#!/usr/bin/env bash
# scripts/setup.sh — install the Debian 12 packages mirrord-native needs to build, test and demo.
# Idempotent: when every package is already present it prints nothing and touches nothing.
# Run as root (CI and the README commands do). Used by scripts/test.sh, scripts/demo.sh and .ci/run.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake pkg-config ninja-build clang llvm lld libclang-rt-14-dev
  # libraries
  libboost-dev libssl-dev libbpf-dev bpftool libelf-dev zlib1g-dev
  libnl-3-dev libnl-route-3-dev
  libprotobuf-dev protobuf-compiler nanopb libnanopb-dev python3-protobuf
  libc-ares-dev libnghttp2-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev
  libtomlplusplus-dev catch2
  # what the test pods and integration tests run
  iproute2 iptables nftables dnsmasq-base util-linux procps psmisc curl socat python3 openssl
  gdb strace nodejs wget perl openjdk-17-jre-headless
  # the layer under memcheck (tests/integration/layer_leaks)
  valgrind
)

if [[ $(id -u) -ne 0 ]]; then
  echo "setup.sh: must run as root (it installs Debian packages)" >&2
  exit 1
fi

# kubectl: an independent client that checks the test API server speaks real Kubernetes
# (tests/integration/kube_apiserver). Debian's kubernetes-client, unless a kubectl is there already.
if ! command -v kubectl >/dev/null 2>&1; then
  PACKAGES+=(kubernetes-client)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

echo "setup.sh: installing ${#missing[@]} Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup.sh: done"
