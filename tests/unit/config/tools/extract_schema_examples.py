#!/usr/bin/env python3
"""extract_schema_examples.py: pulls every ```json example out of mirrord's JSON schema
(mirrord-schema.json, the descriptions of every definition) into test data files.

Each example becomes one file in data/schema_examples/:
  * a full config (only top-level keys)      -> NNN-<def>.json             (must load)
  * a fragment of a known section            -> NNN-<def>.json, wrapped into a full config
  * a block that is broken JSON in the docs  -> NNN-<def>.repaired.json     (commas fixed here)
  * a block that mirrord itself rejects      -> NNN-<def>.rejected.json     (+ expected error)
Blocks that are not configs at all (request bodies, partial objects of operator-only features)
are listed in manifest.txt with the reason they were skipped.

Usage: extract_schema_examples.py SCHEMA.json OUT_DIR
"""
import json
import os
import re
import sys

# Fragment wrappers: definition name (prefix) -> function(fragment) -> full config or None.
def incoming(key):
    return lambda f: {"target": "pod/example", "feature": {"network": {"incoming": {"mode": "steal", key: f}}}}

WRAPPERS = [
    ("AdvancedFsUserConfig/properties/mapping", lambda f: {"feature": {"fs": {"mapping": f}}}),
    ("DnsFilterConfig", lambda f: {"feature": {"network": {"dns": {"filter": f}}}}),
    ("OutgoingFilterConfig", lambda f: {"feature": {"network": {"outgoing": {"filter": f}}}}),
    ("HttpFilterFileConfig/properties/", lambda f: {"target": "pod/example", "feature": {"network": {"incoming": {"mode": "steal", "http_filter": f}}}}),
    ("HttpFilterFileConfig", lambda f: {"target": "pod/example", "feature": {"network": {"incoming": {"mode": "steal", "http_filter": f}}}}),
    ("LocalTlsDelivery", incoming("tls_delivery")),
    ("KafkaPayloadProtobuf", lambda f: {"feature": {"split_queues": {"my-topic": f}}}),
    ("DatabaseBranchConfig", lambda f: {"feature": {"db_branches": [f]}} if f.get("type") in BRANCH_TYPES else None),
    ("BodyFilter", lambda f: body_filter_wrap(f)),
]

BRANCH_TYPES = {"clickhouse", "cockroachdb", "dynamodb", "generic", "mariadb", "mongodb", "mssql",
                "mysql", "pg", "redis", "spanner"}


def body_filter_wrap(f):
    steal = {"target": "pod/example", "feature": {"network": {"incoming": {"mode": "steal"}}}}
    if set(f) == {"http_filter"}:
        steal["feature"]["network"]["incoming"]["http_filter"] = f["http_filter"]
        return steal
    if set(f) == {"body_filter"}:
        steal["feature"]["network"]["incoming"]["http_filter"] = f
        return steal
    return None

# Doc examples that mirrord itself rejects: (check(config) -> bool, expected error text, reason).
def _branch_without_connection(cfg):
    branches = cfg.get("feature", {}).get("db_branches", []) if isinstance(cfg, dict) else []
    return any(isinstance(b, dict) and "connection" not in b and b.get("location") != "local"
               for b in branches)


def _env_include_and_exclude(cfg):
    env = cfg.get("feature", {}).get("env") if isinstance(cfg, dict) else None
    return isinstance(env, dict) and "include" in env and "exclude" in env


REJECTED = [
    (lambda cfg: isinstance(cfg, dict) and "connect_tcp" in cfg, "unknown field `connect_tcp`",
     "connect_tcp was removed from mirrord (#3162); mirrord rejects it"),
    (_branch_without_connection, "missing field `connection`",
     "a fragment without the required `connection`; mirrord rejects it too"),
    (_env_include_and_exclude, "both `include` and `exclude`",
     "sets env.include and env.exclude together, which mirrord's verify() rejects"),
]


def blocks(schema):
    out = []

    def walk(node, path):
        if isinstance(node, dict):
            desc = node.get("description")
            if isinstance(desc, str):
                for m in re.finditer(r"```(\w*)\n(.*?)```", desc, re.S):
                    out.append((path, m.group(1), m.group(2)))
            for k, v in node.items():
                walk(v, path + "/" + k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + "/" + str(i))

    walk(schema, "")
    return out


def repair(text):
    # Missing commas between members / trailing commas: the typos found in the docs.
    fixed = re.sub(r'("|\d|true|false|null|\]|\})(\s*\n\s*")', r"\1,\2", text)
    fixed = re.sub(r",(\s*[}\]])", r"\1", fixed)
    return fixed


def main():
    schema_path, out_dir = sys.argv[1], sys.argv[2]
    schema = json.load(open(schema_path))
    top = set(schema["properties"].keys())
    os.makedirs(out_dir, exist_ok=True)
    for f in os.listdir(out_dir):
        os.remove(os.path.join(out_dir, f))
    manifest = []
    n = 0
    for path, lang, text in blocks(schema):
        n += 1
        name = path.replace("/$defs/", "").strip("/").replace("/", "_") or "root"
        base = "%03d-%s" % (n, name)
        if lang not in ("json", ""):
            manifest.append("%s skipped: %s block" % (base, lang))
            continue
        # Template expressions may hold quotes ("{{ get_env(name="X") }}"): classify the block
        # on a probe where each {{ ... }} is a plain word, but keep the real text.
        def probe(t):
            return re.sub(r"\{\{.*?\}\}", "TEMPLATE", t)

        kind = ""
        value = None
        for candidate, suffix in ((text, ""), (repair(text), ".repaired"),
                                  ("{" + repair(text) + "}", ".repaired")):
            try:
                value = json.loads(probe(candidate))
            except ValueError:
                continue
            if suffix:
                kind = suffix
                text = candidate
            break
        if value is None:
            manifest.append("%s skipped: not JSON even after repair" % base)
            continue
        if "{{" not in text and kind:
            text = json.dumps(json.loads(text), indent=2)
        rejected = [(err, why) for check, err, why in REJECTED if check(value)]
        if rejected:
            kind += ".rejected"
            manifest.append('%s%s expect-error "%s": %s' % (base, kind, rejected[0][0], rejected[0][1]))
        elif not (isinstance(value, dict) and set(value) <= top):
            wrapped = None
            for prefix, wrap in WRAPPERS:
                if path.startswith("/$defs/" + prefix) and isinstance(value, dict):
                    wrapped = wrap(value)
                    break
            if wrapped is None:
                manifest.append("%s skipped: a fragment, not a config (%s)" %
                                (base, json.dumps(value)[:70]))
                continue
            text = json.dumps(wrapped, indent=2)
            kind += ".wrapped"
        if ".rejected" not in kind and ".wrapped" in kind:
            wrapped_value = json.loads(probe(text))
            late = [(err, why) for check, err, why in REJECTED if check(wrapped_value)]
            if late:
                kind += ".rejected"
                manifest.append('%s%s expect-error "%s": %s' % (base, kind, late[0][0], late[0][1]))
        fname = base + kind + ".json"
        with open(os.path.join(out_dir, fname), "w") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")
        manifest.append("%s written" % fname)
    with open(os.path.join(out_dir, "manifest.txt"), "w") as fh:
        fh.write("# generated by tools/extract_schema_examples.py from mirrord-schema.json\n")
        fh.write("\n".join(manifest) + "\n")


if __name__ == "__main__":
    main()
