#!/bin/sh
# fake-plugin.sh: a fake exec credential plugin for kubeconfig_test. FAKE_MODE picks the behaviour
# (token, cert, fail, sleep, badjson, wrongkind, notoken); FAKE_API the apiVersion it answers with
# (default: the one in KUBERNETES_EXEC_INFO); FAKE_INFO_OUT, if set, gets KUBERNETES_EXEC_INFO and argv.
api="${FAKE_API:-$(printf '%s' "$KUBERNETES_EXEC_INFO" | sed -n 's/.*"apiVersion":"\([^"]*\)".*/\1/p')}"
if [ -n "$FAKE_INFO_OUT" ]; then
  printf '%s\n%s\n' "$KUBERNETES_EXEC_INFO" "$*" > "$FAKE_INFO_OUT"
fi
case "${FAKE_MODE:-token}" in
  token)
    printf '{"apiVersion":"%s","kind":"ExecCredential","status":{"token":"fake-token-%s","expirationTimestamp":"2030-01-02T03:04:05Z"}}\n' "$api" "$1"
    ;;
  cert)
    printf '{"apiVersion":"%s","kind":"ExecCredential","status":{"clientCertificateData":"CERT","clientKeyData":"KEY","expirationTimestamp":"2030-01-02T04:04:05.5+01:00"}}\n' "$api"
    ;;
  fail)
    echo "some noise first" >&2
    echo "error: could not get token: AccessDenied for profile dev" >&2
    exit 3
    ;;
  sleep)
    sleep 30
    ;;
  badjson)
    echo "this is not json {"
    ;;
  wrongkind)
    printf '{"apiVersion":"%s","kind":"Secret","status":{"token":"x"}}\n' "$api"
    ;;
  notoken)
    printf '{"apiVersion":"%s","kind":"ExecCredential","status":{}}\n' "$api"
    ;;
  badtime)
    printf '{"apiVersion":"%s","kind":"ExecCredential","status":{"token":"t","expirationTimestamp":"tomorrow"}}\n' "$api"
    ;;
esac
