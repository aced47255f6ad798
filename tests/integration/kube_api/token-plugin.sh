#!/bin/sh
# token-plugin.sh: an exec credential plugin for kube_api_test: the first run (no $COUNT_FILE yet)
# answers a stale token, every later run the real one ($GOOD_TOKEN), so a 401 -> refresh -> retry
# can be seen. Each run appends a line to $COUNT_FILE.
if [ -f "$COUNT_FILE" ]; then token="$GOOD_TOKEN"; else token="stale-token"; fi
echo run >> "$COUNT_FILE"
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}\n' "$token"
