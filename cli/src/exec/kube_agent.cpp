// kube_agent.cpp: the Kubernetes path of exec/ext and `mirrord ls` (kube_agent.hpp).
#include "exec/kube_agent.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <thread>

#include "exec/execution.hpp"
#include "kube/api_endpoint.hpp"
#include "kube/https_api.hpp"
#include "kube/kubeconfig.hpp"
#include "kube/port_forward.hpp"
#include "mirrord/config/loader.hpp"

namespace mirrord::cli::exec {

namespace {


}  // namespace

kube::LoadOptions kube_load_options(const config::LayerConfig& config) {
    kube::LoadOptions options;
    options.kubeconfig = config.kubeconfig;
    options.context = config.kube_context;
    options.accept_invalid_certificates = config.accept_invalid_certificates.value_or(false);
    return options;
}

// The CLI's port-forward: its own io_context on a thread, stopped by stop().
struct KubeAgent::Forwarder {
    boost::asio::io_context io;
    std::optional<kube::PortForward> forward;
    std::thread thread;

    Forwarder(std::shared_ptr<kube::ApiEndpoint> endpoint, kube::PortForwardTarget target) {
        kube::PortForwardOptions options;
        // This runs on the port-forward's thread: straight to stderr in one write, never through
        // the progress tree the main thread is writing (nor into ext's JSON on stdout).
        options.log = [](const std::string& line) {
            const std::string text = "mirrord: " + line + "\n";
            std::fwrite(text.data(), 1, text.size(), stderr);
        };
        forward.emplace(io, std::move(endpoint), std::move(target), options);
        thread = std::thread([this] {
            auto work = boost::asio::make_work_guard(io);
            try {
                io.run();
            } catch (const std::exception& e) {
                std::cerr << "mirrord: port-forward stopped: " << e.what() << "\n";
            }
        });
    }
    void stop() {
        if (thread.joinable()) {
            boost::asio::post(io, [this] { forward.reset(); io.stop(); });
            thread.join();
        }
    }
    ~Forwarder() { stop(); }
};

KubeAgent::KubeAgent(const config::LayerConfig& config, ProgressTask& progress) {
    std::shared_ptr<kube::ApiEndpoint> endpoint;
    try {
        const kube::LoadOptions choice = kube_load_options(config);
        kube::KubeContext context = kube::load_kube_context(choice);
        if (context.cluster.insecure_skip_tls_verify) {
            progress.warning("the API server's certificate is not verified (" +
                             std::string(choice.accept_invalid_certificates ? "accept_invalid_certificates"
                                                                            : "insecure-skip-tls-verify") +
                             ")");
        }
        endpoint = std::make_shared<kube::ApiEndpoint>(std::move(context));
        kube::HttpsApi api(endpoint);
        const config::Target target = config.target.path.value_or(config::Target{});
        {
            auto task = progress.subtask("resolving target " + target.to_string());
            target_ = kube::resolve_target(api, target, config.target.namespace_,
                                           endpoint->context().namespace_name);
            for (const auto& w : target_.warnings) {
                progress.warning(w);
            }
            task.success(target_.targetless ? std::string("targetless in namespace ") + target_.namespace_name
                                             : "pod " + target_.namespace_name + "/" + target_.pod + ", container " +
                                                   target_.container);
        }
        {
            auto task = progress.subtask("starting agent in the cluster");
            kube::AgentLaunchOptions options;
            options.token = random_hex(16);
            options.progress = [&task](const std::string& line) { task.info(line); };
            agent_ = kube::launch_agent(api, config, target_, options);
            task.success("agent " + agent_.version + " ready in " + agent_.namespace_name + "/" + agent_.pod +
                         (agent_.job.empty() ? std::string(" (ephemeral container ") + agent_.container + ")"
                                             : std::string(" (job ") + agent_.job + ")"));
        }
    } catch (const ExecError&) {
        throw;
    } catch (const std::exception& e) {
        throw ExecError(e.what());
    }
    endpoint_ = endpoint;
    kube::PortForwardTarget where{agent_.namespace_name, agent_.pod, agent_.port};
    try {
        forwarder_ = std::make_unique<Forwarder>(endpoint, where);
    } catch (const std::exception& e) {
        delete_job();
        throw ExecError(std::string("port-forward to the agent ") + agent_.namespace_name + "/" + agent_.pod + ":" +
                        std::to_string(agent_.port) + ": " + e.what());
    }
}

KubeAgent::~KubeAgent() {
    stop_forwarding();
    if (!released_) {
        delete_job();
    }
}

void KubeAgent::delete_job() noexcept {
    if (agent_.job.empty() || !endpoint_) {
        return;
    }
    try {
        kube::HttpsApi api(endpoint_);
        api.del("/apis/batch/v1/namespaces/" + agent_.namespace_name + "/jobs/" + agent_.job,
                nlohmann::json{{"kind", "DeleteOptions"}, {"apiVersion", "v1"}, {"propagationPolicy", "Background"}});
    } catch (const std::exception& e) {
        std::cerr << "mirrord: could not delete the agent job " << agent_.namespace_name << "/" << agent_.job << ": "
                  << e.what() << " (it ends by itself after agent.communication_timeout)\n";
    }
}

std::string KubeAgent::local_address() const { return forwarder_->forward->local_address(); }

void KubeAgent::stop_forwarding() {
    if (forwarder_) {
        forwarder_->stop();
    }
}

nlohmann::json KubeAgent::connect_json(const config::LayerConfig& config) const {
    const kube::LoadOptions choice = kube_load_options(config);
    nlohmann::json kube = {{"namespace", agent_.namespace_name},
                           {"pod", agent_.pod},
                           {"port", agent_.port},
                           {"accept_invalid_certificates", choice.accept_invalid_certificates}};
    // The intproxy runs from another directory: a relative path would not name the same file.
    kube["kubeconfig"] = choice.kubeconfig ? nlohmann::json(std::filesystem::absolute(*choice.kubeconfig).string())
                                           : nlohmann::json(nullptr);
    kube["context"] = choice.context ? nlohmann::json(*choice.context) : nlohmann::json(nullptr);
    return kube;
}

int ls_command(const std::string& config_file, const std::optional<std::string>& namespace_override) {
    try {
        config::LoadOptions options;
        if (!config_file.empty()) {
            options.path = config_file;
        }
        options.verify = false;
        config::LoadResult loaded = config::load_config(options);
        kube::KubeContext context = kube::load_kube_context(kube_load_options(loaded.config));
        std::string ns = namespace_override.value_or(loaded.config.target.namespace_.value_or(context.namespace_name));
        auto endpoint = std::make_shared<kube::ApiEndpoint>(std::move(context));
        kube::HttpsApi api(endpoint);
        const char* rich = std::getenv("MIRRORD_LS_RICH_OUTPUT");
        nlohmann::json list = kube::list_targets(api, ns, rich != nullptr && *rich != '\0' &&
                                                              std::strcmp(rich, "false") != 0);
        std::cout << list.dump() << std::endl;
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "mirrord ls: " << e.what() << "\n";
        return 1;
    }
}

}  // namespace mirrord::cli::exec
