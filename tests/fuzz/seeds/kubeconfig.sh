#!/usr/bin/env bash
# seeds/kubeconfig.sh CORPUS_DIR — seed corpus of fuzz_kubeconfig, from the kube unit tests'
# kubeconfigs (kind, GKE, EKS, AKS, token, the KUBECONFIG merge pair, the broken ones) plus inputs
# that use the fuzzer's temp dir files (certs/ca.crt, token.txt). Each seed is the options byte
# then the text; "#--next-file--" lines separate the files of a KUBECONFIG list.
set -euo pipefail
out=$1
data="$(cd "$(dirname "$0")/../../unit/cli/kubeconfig" && pwd)"
n=0
for f in "$data"/*.yaml "$data"/broken/*.yaml "$data"/merge/*.yaml; do
  n=$((n + 1))
  { printf '\0'; cat "$f"; } >"$out/seed-$n"
done
n=$((n + 1))
{ printf '\0'; cat "$data/merge/a.yaml"; printf '\n#--next-file--\n'; cat "$data/merge/b.yaml"
  printf '\n#--next-file--\n'; cat "$data/merge/empty.yaml"; } >"$out/seed-$n"
n=$((n + 1))
{ printf '\3'; cat <<'T'; } >"$out/seed-$n"
apiVersion: v1
kind: Config
current-context: other
contexts:
- name: fuzz
  context: {cluster: c, user: u, namespace: ns}
clusters:
- name: c
  cluster: {server: "127.0.0.1:6443", certificate-authority: certs/ca.crt, tls-server-name: k, proxy-url: "http://p:3128"}
users:
- name: u
  user: {tokenFile: token.txt, client-certificate: certs/client.crt, client-key: ./certs/client.key}
T
n=$((n + 1))
{ printf '\0'; cat <<'T'; } >"$out/seed-$n"
current-context: x
contexts: [{name: x, context: {cluster: c, user: u}}]
clusters: [{name: c, cluster: {server: "https://h", certificate-authority-data: "LS0tLS1CRUdJTg==", insecure-skip-tls-verify: true}}]
users:
- name: u
  user:
    client-certificate-data: "QUJD"
    client-key-data: "REVG"
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: ./bin/plugin
      args: ["--a", "b"]
      env: [{name: A, value: "1"}, {name: B}]
      installHint: install it
      provideClusterInfo: true
      interactiveMode: IfAvailable
T
