#!/usr/bin/env bash
# seeds/exec_credential.sh CORPUS_DIR — seed corpus of fuzz_exec_credential: ExecCredential
# outputs as the fake plugin of the kube unit tests prints them (token, cert, offsets, fractions)
# and a few rejected ones. Byte 0: \1 = the kubeconfig asks for v1, \0 = v1beta1.
set -euo pipefail
out=$1
n=0
seed() {
  n=$((n + 1))
  printf "$1%s" "$2" >"$out/seed-$n"
}
seed '\1' '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"fake-token","expirationTimestamp":"2030-01-02T03:04:05Z"}}'
seed '\0' '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"clientCertificateData":"CERT","clientKeyData":"KEY","expirationTimestamp":"2030-01-02T04:04:05.5+01:00"}}'
seed '\0' '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","spec":{"interactive":false},"status":{"token":"t","expirationTimestamp":"2024-02-29t23:59:60.123456789123-12:30"}}'
seed '\1' '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"t","expirationTimestamp":"tomorrow"}}'
seed '\1' '{"apiVersion":"client.authentication.k8s.io/v1","kind":"Secret","status":{"token":"x"}}'
seed '\1' '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{}}'
seed '\0' 'this is not json {'
