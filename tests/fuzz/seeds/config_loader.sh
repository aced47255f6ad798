#!/usr/bin/env bash
# seeds/config_loader.sh CORPUS_DIR — seed corpus of fuzz_config_loader, from the config unit
# tests' data (CodeNOW and mirrord-style configs in all three formats, the schema examples) plus a
# few templating, env-override and MIRRORD_RESOLVED_CONFIG inputs. Each seed is the mode byte
# (see fuzz_config_loader.cpp: format | 4 verify | 8 empty_target_final) followed by the text.
set -euo pipefail
out=$1
data="$(cd "$(dirname "$0")/../../unit/config/data" && pwd)"
n=0
seed() {  # seed MODE_BYTE_OCTAL < text
  n=$((n + 1))
  { printf "\\$1"; cat; } >"$out/seed-$n"
}
for f in "$data"/codenow/* "$data"/mirrord_style/* "$data"/schema_examples/*; do
  case $f in
    *.json) fmt=0 ;;
    *.toml) fmt=1 ;;
    *.yaml | *.yml) fmt=2 ;;
    *) continue ;;
  esac
  seed "$(printf '%o' $((fmt | 12)))" <"$f"
  # Without verify() too, for the full configs only (keeps the replay inside the 8 s budget).
  [[ $f == */schema_examples/* ]] || seed "$(printf '%o' "$fmt")" <"$f"
done
seed 14 <<'T'
{"target": "{{ get_env(name="FUZZ_VAR", default="pod/x") }}", "key": "{{ git_branch | default(value='s') | upper }}"}
T
seed 16 <<'T'
key: "{{ key ~ '-x' | replace(from='-', to='_') }}"
feature: {network: {incoming: {mode: steal, http_filter: {header_filter: "{# c #}^x: {{ 'y' | trim }}$"}}}}
T
seed 15 <<'T'
target = "pod/{% raw %}{{x}}{% endraw %}"
[feature.fs]
mode = "read"
T
seed 14 <<'T'
{"feature": {"network": {"incoming": "mirror"}}}
#--env--
MIRRORD_AGENT_TCP_STEAL_TRAFFIC=true
MIRRORD_HTTP_FILTER_PORTS=80;8080
MIRRORD_HTTP_HEADER_FILTER=^x-user: me$
MIRRORD_FILE_MODE=write
MIRRORD_FILE_READ_WRITE_PATTERN=a;b
MIRRORD_AGENT_TTL=45
MIRRORD_IMPERSONATED_TARGET=deployment/d/container/c
MIRRORD_KEY=k
T
seed 4 <<'T'
{}
#--env--
MIRRORD_ACCEPT_INVALID_CERTIFICATES=true
MIRRORD_AGENT_ADDRESS=127.0.0.1:7000
MIRRORD_AGENT_IMAGE=img:1
MIRRORD_AGENT_STARTUP_TIMEOUT=120
MIRRORD_EPHEMERAL_CONTAINER=true
MIRRORD_FILE_OPS=false
MIRRORD_OVERRIDE_ENV_VARS_EXCLUDE=ONLY
T
# MIRRORD_RESOLVED_CONFIG payloads (base64 of resolved JSON).
printf '%s' '{"key_generated": true}' | base64 -w0 | seed 3
printf '%s' '{"target": {"path": "pod/a"}, "feature": {"network": {"incoming": {"mode": "steal"}}}, "key": "k", "key_generated": false}' | base64 -w0 | seed 3
