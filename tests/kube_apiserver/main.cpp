// main.cpp: fake-kube-apiserver — a Kubernetes API server for tests (see README.md). Parses the
// flags, loads the seed, generates TLS, writes the kubeconfig, starts the kubelet and the HTTPS
// server, prints the one ready line, then waits for SIGTERM/SIGINT/SIGHUP and cleans up (kills its
// processes, removes its cgroups and namespaces) before exiting 0.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "api_routes.hpp"
#include "cgroups.hpp"
#include "control.hpp"
#include "kubelet.hpp"
#include "portforward.hpp"
#include "server.hpp"
#include "store.hpp"
#include "tls.hpp"

using namespace fakekube;

namespace {

nlohmann::json read_seed(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot read --seed file " + path);
    std::stringstream text;
    text << in.rdbuf();
    nlohmann::json seed = nlohmann::json::parse(text.str(), nullptr, false);
    if (seed.is_discarded()) throw std::runtime_error("--seed file " + path + " is not valid JSON");
    if (!seed.is_object()) throw std::runtime_error("--seed file " + path + " must hold a JSON object");
    return seed;
}

// {"name":..,"labels":{..}} shorthand or a full object.
nlohmann::json named_object(const nlohmann::json& entry, const char* what) {
    if (!entry.is_object()) throw std::runtime_error(std::string("seed: each ") + what + " must be an object");
    if (entry.contains("metadata")) return entry;
    if (!entry.contains("name") || !entry["name"].is_string())
        throw std::runtime_error(std::string("seed: a ") + what + " needs a string \"name\" (got " + entry.dump() + ")");
    nlohmann::json object = {{"metadata", {{"name", entry["name"]}}}};
    if (entry.contains("labels")) object["metadata"]["labels"] = entry["labels"];
    if (entry.contains("annotations")) object["metadata"]["annotations"] = entry["annotations"];
    return object;
}

void load_seed(Store& store, const nlohmann::json& seed) {
    const ResourceType& ns_type = *find_resource_by_plural("namespaces");
    const ResourceType& node_type = *find_resource_by_plural("nodes");
    static const std::set<std::string> extra_keys = {"images", "rbac", "pod_runtime"};
    for (auto& [key, value] : seed.items()) {
        if (extra_keys.count(key)) continue;
        if (!find_resource_by_plural(key))
            throw std::runtime_error("seed: unknown key \"" + key + "\" (expected namespaces, nodes, pods, events, services, jobs, cronjobs, "
                                     "deployments, replicasets, statefulsets, rollouts, images, rbac, pod_runtime)");
        if (!value.is_array()) throw std::runtime_error("seed: \"" + key + "\" must be an array");
    }
    auto ensure_namespace = [&](const std::string& name) {
        if (!store.get(ns_type, "", name))
            store.upsert(ns_type, {{"metadata", {{"name", name}}}, {"status", {{"phase", "Active"}}}});
    };
    if (seed.contains("namespaces"))
        for (const auto& entry : seed["namespaces"]) {
            nlohmann::json object = named_object(entry, "namespace");
            if (!object.contains("status")) object["status"] = {{"phase", "Active"}};
            store.upsert(ns_type, object);
        }
    ensure_namespace("default");
    ensure_namespace("kube-system");
    if (seed.contains("nodes"))
        for (const auto& entry : seed["nodes"]) {
            nlohmann::json object = named_object(entry, "node");
            std::string name = object["metadata"]["name"];
            auto& labels = object["metadata"]["labels"];
            if (!labels.is_object()) labels = nlohmann::json::object();
            if (!labels.contains("kubernetes.io/hostname")) labels["kubernetes.io/hostname"] = name;
            if (!labels.contains("kubernetes.io/os")) labels["kubernetes.io/os"] = "linux";
            if (!object.contains("status"))
                object["status"] = {{"conditions", {{{"type", "Ready"}, {"status", "True"}, {"reason", "KubeletReady"}}}},
                                    {"addresses", {{{"type", "InternalIP"}, {"address", "127.0.0.1"}}, {{"type", "Hostname"}, {"address", name}}}},
                                    {"nodeInfo", {{"containerRuntimeVersion", "containerd://1.7.0"}, {"kubeletVersion", "v1.28.0"}, {"operatingSystem", "linux"}, {"architecture", "amd64"}}}};
            store.upsert(node_type, object);
        }
    for (const auto& type : all_resources()) {
        if (type.plural == "namespaces" || type.plural == "nodes" || !seed.contains(type.plural)) continue;
        for (const auto& object : seed[type.plural]) {
            if (!object.is_object()) throw std::runtime_error("seed: each of \"" + type.plural + "\" must be an object");
            std::string ns = meta_string(object, "namespace");
            ensure_namespace(ns.empty() ? "default" : ns);
            try {
                store.upsert(type, object);
            } catch (const ApiFailure& f) {
                throw std::runtime_error("seed: bad " + type.kind + " " + object.value("metadata", nlohmann::json::object()).dump() + ": " + f.message);
            }
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"fake-kube-apiserver: a Kubernetes API server for tests (pods, jobs, logs, port-forward, watches)"};
    std::string seed_path, agent_binary, listen = "127.0.0.1:0", kubeconfig_out, token, state_dir;
    size_t watch_history = 10000;
    app.add_option("--seed", seed_path, "seed JSON: namespaces, nodes, pods, deployments, replicasets, statefulsets, rollouts, jobs, cronjobs, services, events, images, rbac, pod_runtime")
        ->required();
    app.add_option("--agent-binary", agent_binary, "what to run for containers whose command is mirrord-agent");
    app.add_option("--listen", listen, "HOST:PORT to listen on (port 0: any free port)");
    app.add_option("--kubeconfig-out", kubeconfig_out, "write a kubeconfig for this server here");
    app.add_option("--token", token, "bearer token clients must send (default: random)");
    app.add_option("--state-dir", state_dir, "directory for a copy of the kubeconfig (kubeconfig) and container logs (logs/)");
    app.add_option("--watch-history", watch_history, "watch events kept for resourceVersion resumes (older ones: 410 Gone)");
    CLI11_PARSE(app, argc, argv);

    // Signals are taken by sigwait on the main thread; every thread inherits the mask, and the
    // kubelet unblocks them in its children before exec.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    signal(SIGPIPE, SIG_IGN);

    try {
        if (!agent_binary.empty() && access(agent_binary.c_str(), X_OK) != 0)
            throw std::runtime_error("--agent-binary " + agent_binary + " is not an executable file");
        auto colon = listen.rfind(':');
        if (colon == std::string::npos) throw std::runtime_error("--listen must be HOST:PORT (got \"" + listen + "\")");
        std::string host = listen.substr(0, colon);
        if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
        if (host == "localhost") host = "127.0.0.1";
        int port = 0;
        try {
            size_t used = 0;
            port = std::stoi(listen.substr(colon + 1), &used);
            if (used != listen.size() - colon - 1) throw std::invalid_argument("port");
        } catch (const std::exception&) {
            port = -1;
        }
        if (port < 0 || port > 65535) throw std::runtime_error("--listen: bad port in \"" + listen + "\"");
        if (token.empty()) token = random_hex(32);

        nlohmann::json seed = read_seed(seed_path);
        CgroupManager::remove_stale();
        Store store(watch_history);
        Policy policy;
        policy.load(seed);
        load_seed(store, seed);

        TlsMaterial tls = generate_tls_material();
        Server server(host, static_cast<uint16_t>(port), tls, token);
        std::string url_host = host.find(':') != std::string::npos ? "[" + host + "]" : host;
        std::string url = "https://" + url_host + ":" + std::to_string(server.port());

        Kubelet kubelet(store, policy, agent_binary, state_dir);
        if (seed.contains("pod_runtime")) kubelet.load_pod_runtime(seed["pod_runtime"]);
        kubelet.start();

        RequestLog log;
        FaultRules faults;
        PortForwarder port_forwarder;
        ApiRoutes routes(store, policy, kubelet, url_host + ":" + std::to_string(server.port()));
        FakeControl control(store, log, faults, port_forwarder);

        std::string kubeconfig = kubeconfig_yaml(url, token, tls.ca_cert_pem);
        auto write_text = [](const std::string& path, const std::string& text) {
            std::ofstream out(path, std::ios::trunc);
            out << text;
            out.close();
            if (!out) throw std::runtime_error("cannot write " + path);
        };
        if (!state_dir.empty()) {
            std::error_code ec;
            std::filesystem::create_directories(state_dir + "/logs", ec);
            if (ec) throw std::runtime_error("--state-dir: cannot create " + state_dir + "/logs: " + ec.message());
        }
        if (!kubeconfig_out.empty()) write_text(kubeconfig_out, kubeconfig);
        if (!state_dir.empty()) write_text(state_dir + "/kubeconfig", kubeconfig);

        server.start(routes, control, log, faults, port_forwarder);
        std::printf("fake-kube-apiserver listening on %s\n", url.c_str());
        std::fflush(stdout);

        int sig = 0;
        sigwait(&signals, &sig);
        std::fprintf(stderr, "fake-kube-apiserver: signal %d, shutting down\n", sig);
        server.stop();
        store.close_all_watches();
        kubelet.shutdown();
        std::fflush(stdout);
        std::fflush(stderr);
        _exit(0);  // connection threads are detached and may still block on sockets
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fake-kube-apiserver: %s\n", e.what());
        return 1;
    }
}
