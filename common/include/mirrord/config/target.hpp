// target.hpp: what mirrord impersonates (`target` in mirrord.json, `-t` on the CLI).
// String forms as mirrord: `targetless`, `pod/NAME[/container/C]`, `deployment/NAME` (also
// `deploy/`), `rollout/`, `job/`, `cronjob/`, `statefulset/`, `service/`, `replicaset/`, each with
// an optional `/container/C`, and `label/k=v[,k=v...][/container/C]`. mirrord-native extension:
// `pid/PID` = the namespaces of a local process (container, netns) - no cluster needed.
// Object forms as mirrord: {"pod": N, "container": C}, {"deployment": N}, {"rollout": N},
// {"job": N}, {"cron_job": N}, {"stateful_set": N}, {"service": N}, {"replica_set": N},
// {"labels": {...}}, plus {"pid": PID}.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace mirrord::config {

enum class TargetType {
    Targetless,
    Pod,
    Deployment,
    Rollout,
    Job,
    CronJob,
    StatefulSet,
    Service,
    ReplicaSet,
    Label,
    Pid,  // mirrord-native: a local process
};

struct Target {
    TargetType type = TargetType::Targetless;
    std::string name;                          // workload name (not for targetless/label/pid)
    std::optional<std::string> container;      // not for targetless/pid
    std::map<std::string, std::string> labels;  // label targets only
    long pid = 0;                              // pid targets only

    bool operator==(const Target&) const = default;

    // Canonical string form ("deployment/x/container/c", "pid/42", "targetless").
    std::string to_string() const;
    // Job, cronjob, statefulset, service, replicaset and label targets need mirrord's operator.
    bool requires_operator() const;
};

// mirrord's lowercase type names: "targetless", "pod", "deployment", "rollout", "job",
// "cronjob", "statefulset", "service", "replicaset", "label" (and "pid").
std::string_view target_type_name(TargetType type);

// Parses a target string. Throws ConfigError (path "target.path") naming the problem and
// listing the valid forms.
Target parse_target(std::string_view text);

// mirrord's object shape of a target (serde untagged): {"deployment":"x","container":null},
// {"labels":{...}}; targetless -> null. Ours: {"pid":42}.
nlohmann::json target_to_json(const Target& target);

struct TargetConfig {
    std::optional<Target> path;            // unset = targetless (or "ask the user" in the IDE)
    std::optional<std::string> namespace_;  // `namespace`

    bool operator==(const TargetConfig&) const = default;
};

}  // namespace mirrord::config
