// container_lookup.cpp: container id -> host pid, by /proc/*/cgroup and by the Docker Engine API
// (see container_lookup.hpp).
#include "container_lookup.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string_view>

namespace mirrord::agent {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace stdfs = std::filesystem;
using local_stream = asio::local::stream_protocol;

bool is_hex(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    });
}

std::optional<std::string> read_small_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        return std::nullopt;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    if (in.bad()) {
        return std::nullopt;
    }
    return ss.str();
}

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// What a cgroup path component says about a container id.
enum class ComponentMatch { none, container, conmon };

// Checks one path component ("cri-containerd-<id>.scope", "crio-<id>", "docker-<id>.scope",
// "<id>", ...) against `id` (full or a prefix of at least 12). On a match `full_id` gets the id
// the component names.
ComponentMatch match_component(std::string_view component, const std::string& id, std::string& full_id) {
    std::string_view name = component;
    if (ends_with(name, ".scope")) {
        name.remove_suffix(6);
    }
    bool conmon = false;
    if (starts_with(name, "crio-conmon-")) {
        name.remove_prefix(12);
        conmon = true;
    } else {
        for (std::string_view prefix : {"cri-containerd-", "crio-", "docker-", "containerd-", "libpod-"}) {
            if (starts_with(name, prefix)) {
                name.remove_prefix(prefix.size());
                break;
            }
        }
    }
    if (name.size() < id.size() || !starts_with(name, id) || !is_hex(name)) {
        return ComponentMatch::none;
    }
    // A bare component must look like a whole container id, so that a short id never matches
    // some other hex-named directory by accident.
    if (name.size() != 64 && name.size() != id.size()) {
        return ComponentMatch::none;
    }
    full_id = std::string(name);
    return conmon ? ComponentMatch::conmon : ComponentMatch::container;
}

struct ProcStat {
    pid_t ppid = 0;
    unsigned long long start_time = 0;
};

std::optional<ProcStat> read_stat(const std::string& proc_root, pid_t pid) {
    auto text = read_small_file(proc_root + "/" + std::to_string(pid) + "/stat");
    if (!text) {
        return std::nullopt;
    }
    // "PID (comm) S PPID ... field 22 = starttime"; comm may hold spaces and parentheses.
    auto close = text->rfind(')');
    if (close == std::string::npos) {
        return std::nullopt;
    }
    std::istringstream rest(text->substr(close + 1));
    std::vector<std::string> fields;
    std::string f;
    while (rest >> f) {
        fields.push_back(f);
    }
    if (fields.size() < 20) {
        return std::nullopt;
    }
    try {
        ProcStat st;
        st.ppid = static_cast<pid_t>(std::stol(fields[1]));
        st.start_time = std::stoull(fields[19]);
        return st;
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

// True when the process is pid 1 of its innermost pid namespace (the "NSpid:" line's last value).
bool is_namespace_init(const std::string& proc_root, pid_t pid) {
    auto text = read_small_file(proc_root + "/" + std::to_string(pid) + "/status");
    if (!text) {
        return false;
    }
    std::istringstream in(*text);
    std::string line;
    while (std::getline(in, line)) {
        if (starts_with(line, "NSpid:")) {
            std::istringstream values(line.substr(6));
            std::string v, last;
            while (values >> v) {
                last = v;
            }
            return last == "1";
        }
    }
    return false;
}

struct CgroupHit {
    std::string line;  // the cgroup line that named the container
};

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
    std::string out;
    for (const auto& p : parts) {
        if (!out.empty()) {
            out += sep;
        }
        out += p;
    }
    return out;
}

struct CgroupScan {
    // full container id -> pid -> the line that matched
    std::map<std::string, std::map<pid_t, CgroupHit>> containers;
    std::map<pid_t, CgroupHit> conmon;  // crio-conmon-<id> processes, skipped
    size_t processes_scanned = 0;
    bool proc_readable = false;
};

CgroupScan scan_cgroups(const std::string& id, const std::string& proc_root) {
    CgroupScan scan;
    std::error_code ec;
    stdfs::directory_iterator it(proc_root, ec);
    if (ec) {
        return scan;
    }
    scan.proc_readable = true;
    for (; it != stdfs::directory_iterator(); it.increment(ec)) {
        if (ec) {
            break;
        }
        std::string name = it->path().filename().string();
        if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
            continue;
        }
        pid_t pid = 0;
        try {
            pid = static_cast<pid_t>(std::stol(name));
        } catch (const std::exception&) {
            continue;
        }
        auto text = read_small_file(it->path().string() + "/cgroup");  // the process may be gone: skip it
        if (!text) {
            continue;
        }
        ++scan.processes_scanned;
        std::istringstream lines(*text);
        std::string line;
        bool found = false;
        while (!found && std::getline(lines, line)) {
            // "hierarchy-id:controllers:path", every hierarchy (v1 lines and the v2 "0::" line).
            auto first = line.find(':');
            auto second = first == std::string::npos ? std::string::npos : line.find(':', first + 1);
            if (second == std::string::npos) {
                continue;
            }
            std::string_view path = std::string_view(line).substr(second + 1);
            size_t pos = 0;
            while (pos <= path.size()) {
                size_t slash = path.find('/', pos);
                std::string_view component = path.substr(pos, slash == std::string_view::npos ? path.npos : slash - pos);
                std::string full_id;
                auto m = component.empty() ? ComponentMatch::none : match_component(component, id, full_id);
                if (m == ComponentMatch::container) {
                    scan.containers[full_id][pid] = CgroupHit{line};
                    scan.conmon.erase(pid);
                    found = true;
                    break;
                }
                if (m == ComponentMatch::conmon) {
                    scan.conmon[pid] = CgroupHit{line};
                }
                if (slash == std::string_view::npos) {
                    break;
                }
                pos = slash + 1;
            }
        }
    }
    return scan;
}

// Docker Engine API: GET /containers/ID/json on one unix socket. Returns the HTTP status and body.
std::pair<unsigned, std::string> docker_get(const std::string& socket_path, const std::string& target,
                                            std::chrono::milliseconds timeout) {
    asio::io_context io(1);
    beast::basic_stream<local_stream> stream(io);
    beast::flat_buffer buffer;
    http::request<http::empty_body> request{http::verb::get, target, 11};
    request.set(http::field::host, "docker");
    request.set(http::field::user_agent, "mirrord-agent");
    request.set(http::field::accept, "application/json");
    http::response_parser<http::string_body> parser;
    parser.body_limit(8u << 20);
    boost::system::error_code failure;
    std::string failed_step;
    stream.expires_after(timeout);
    stream.async_connect(local_stream::endpoint(socket_path), [&](const boost::system::error_code& ec) {
        if (ec) {
            failure = ec;
            failed_step = "connect";
            return;
        }
        http::async_write(stream, request, [&](const boost::system::error_code& wec, size_t) {
            if (wec) {
                failure = wec;
                failed_step = "write";
                return;
            }
            http::async_read(stream, buffer, parser, [&](const boost::system::error_code& rec, size_t) {
                if (rec) {
                    failure = rec;
                    failed_step = "read";
                }
            });
        });
    });
    io.run();
    boost::system::error_code ignored;
    stream.socket().close(ignored);
    if (failure) {
        throw std::runtime_error(failed_step + ": " +
                                 (failure == beast::error::timeout ? std::string("timed out") : failure.message()));
    }
    auto response = parser.release();
    return {response.result_int(), response.body()};
}

}  // namespace

std::string normalize_container_id(const std::string& container_id) {
    std::string id = container_id;
    if (auto sep = id.find("://"); sep != std::string::npos) {
        id = id.substr(sep + 3);  // "containerd://<id>" as Kubernetes reports it
    }
    std::transform(id.begin(), id.end(), id.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    auto bad = std::find_if(id.begin(), id.end(), [](char c) { return !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')); });
    if (id.empty() || bad != id.end() || id.size() < 12 || id.size() > 64) {
        std::string why = id.empty()        ? "it is empty"
                          : bad != id.end() ? std::string("'") + *bad + "' is not a hexadecimal digit"
                                            : "it has " + std::to_string(id.size()) + " characters";
        throw std::invalid_argument("container id '" + container_id +
                                    "' is not a container id: expected 12 to 64 hexadecimal characters "
                                    "(as in containerd://<64 hex> from the pod's status), but " + why);
    }
    return id;
}

std::string normalize_container_runtime(const std::string& runtime) {
    if (runtime == "containerd" || runtime == "docker") {
        return runtime;
    }
    if (runtime == "cri-o" || runtime == "crio") {
        return "cri-o";
    }
    throw std::invalid_argument("container runtime '" + runtime + "' is not supported: use containerd, cri-o or docker");
}

ContainerLookupResult find_container_by_cgroup(const std::string& container_id, const ContainerLookupOptions& options) {
    std::string id = normalize_container_id(container_id);
    CgroupScan scan = scan_cgroups(id, options.proc_root);
    ContainerLookupResult result;
    if (scan.containers.empty()) {
        return result;
    }
    if (scan.containers.size() > 1) {
        std::vector<std::string> ids;
        for (const auto& [full, pids] : scan.containers) {
            ids.push_back(full);
        }
        throw std::runtime_error("container id '" + id + "' is ambiguous: it starts " + std::to_string(ids.size()) +
                                 " containers' ids (" + join(ids, ", ") + "); give the whole 64-character id");
    }
    const auto& [full_id, members] = *scan.containers.begin();
    // The container's init: its parent is outside the container (the runtime's shim). Processes
    // started later by exec hang off the shim too: prefer the pid namespace's init, then the oldest.
    struct Candidate {
        pid_t pid;
        bool ns_init;
        unsigned long long start_time;
        pid_t ppid;
    };
    std::vector<Candidate> candidates;
    for (const auto& [pid, hit] : members) {
        auto st = read_stat(options.proc_root, pid);
        if (!st) {
            continue;  // exited meanwhile
        }
        if (members.count(st->ppid) != 0) {
            continue;
        }
        candidates.push_back({pid, is_namespace_init(options.proc_root, pid), st->start_time, st->ppid});
    }
    if (candidates.empty()) {
        return result;  // every process went away while we looked
    }
    std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
        if (a.ns_init != b.ns_init) {
            return a.ns_init;
        }
        if (a.start_time != b.start_time) {
            return a.start_time < b.start_time;
        }
        return a.pid < b.pid;
    });
    const Candidate& init = candidates.front();
    result.pid = init.pid;
    result.how = options.proc_root + "/" + std::to_string(init.pid) + "/cgroup names container " + full_id + " ('" +
                 members.at(init.pid).line + "'); " + std::to_string(members.size()) +
                 " process(es) in that cgroup, this one's parent " + std::to_string(init.ppid) +
                 " is outside it" + (init.ns_init ? " and it is pid 1 of its pid namespace" : "");
    return result;
}

ContainerLookupResult find_container_by_docker_api(const std::string& container_id,
                                                   const ContainerLookupOptions& options) {
    std::string id = normalize_container_id(container_id);
    ContainerLookupResult result;
    std::vector<std::string> tried;
    for (const auto& socket_path : options.docker_sockets) {
        struct stat st {};
        if (::stat(socket_path.c_str(), &st) != 0) {
            tried.push_back(socket_path + ": absent");
            continue;
        }
        if (!S_ISSOCK(st.st_mode)) {
            tried.push_back(socket_path + ": not a socket");
            continue;
        }
        std::pair<unsigned, std::string> reply;
        try {
            reply = docker_get(socket_path, "/containers/" + id + "/json",
                               std::chrono::milliseconds(options.docker_timeout_ms));
        } catch (const std::exception& e) {
            tried.push_back(socket_path + ": " + e.what());
            continue;
        }
        auto [status, body] = reply;
        if (status == 404) {
            tried.push_back(socket_path + ": Docker knows no container " + id);
            continue;
        }
        if (status != 200) {
            std::string message = body.substr(0, 300);
            try {
                auto j = nlohmann::json::parse(body);
                if (j.is_object() && j.contains("message") && j["message"].is_string()) {
                    message = j["message"].get<std::string>();
                }
            } catch (const std::exception&) {
            }
            tried.push_back(socket_path + ": HTTP " + std::to_string(status) + " " + message);
            continue;
        }
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(body);
        } catch (const std::exception& e) {
            tried.push_back(socket_path + ": the reply is not JSON (" + e.what() + ")");
            continue;
        }
        if (!j.is_object() || !j.contains("State") || !j["State"].is_object() || !j["State"].contains("Pid") ||
            !j["State"]["Pid"].is_number_integer()) {
            tried.push_back(socket_path + ": the reply has no integer State.Pid");
            continue;
        }
        auto pid = j["State"]["Pid"].get<long long>();
        std::string state_text = j["State"].contains("Status") && j["State"]["Status"].is_string()
                                     ? j["State"]["Status"].get<std::string>()
                                     : "unknown";
        if (pid <= 0 || pid > INT32_MAX) {
            throw std::runtime_error("Docker (" + socket_path + ") says container " + id + " is not running (state " +
                                     state_text + ", State.Pid " + std::to_string(pid) + ")");
        }
        result.pid = static_cast<pid_t>(pid);
        result.how = "Docker Engine API " + socket_path + ": GET /containers/" + id + "/json -> State.Pid " +
                     std::to_string(pid) + " (state " + state_text + ")";
        return result;
    }
    result.how = join(tried, "; ");
    return result;
}

ContainerLookupResult lookup_container(const std::string& container_id, const std::string& runtime,
                                       const ContainerLookupOptions& options) {
    std::string id = normalize_container_id(container_id);
    std::string rt = normalize_container_runtime(runtime);
    auto by_cgroup = find_container_by_cgroup(id, options);
    if (by_cgroup.pid > 0) {
        return by_cgroup;
    }
    std::string docker_note;
    if (rt == "docker") {
        auto by_api = find_container_by_docker_api(id, options);
        if (by_api.pid > 0) {
            return by_api;
        }
        docker_note = "; Docker Engine API: " + (by_api.how.empty() ? std::string("no socket configured") : by_api.how);
    }
    // Explain where we looked, and the usual reason (no hostPID, wrong node).
    CgroupScan scan = scan_cgroups(id, options.proc_root);
    std::string cgroup_note;
    if (!scan.proc_readable) {
        cgroup_note = "cannot read " + options.proc_root;
    } else {
        cgroup_note = "no process in " + options.proc_root + "/*/cgroup (" + std::to_string(scan.processes_scanned) +
                      " processes scanned) is in a cgroup named after it (cri-containerd-ID.scope, crio-ID.scope, "
                      "docker-ID.scope, .../ID)";
        if (!scan.conmon.empty()) {
            cgroup_note += "; only CRI-O's conmon (crio-conmon-" + id + ", pid " +
                           std::to_string(scan.conmon.begin()->first) +
                           ") was seen, which is not the container: the container may have exited";
        }
    }
    throw std::runtime_error("container " + id + " (runtime " + rt + ") not found: " + cgroup_note + docker_note +
                             ". The agent must run on the target's node with hostPID: true to see the container's "
                             "processes; is the target pod still running there?");
}

pid_t find_container_pid(const std::string& container_id, const std::string& runtime,
                         const ContainerLookupOptions& options) {
    return lookup_container(container_id, runtime, options).pid;
}

}  // namespace mirrord::agent
