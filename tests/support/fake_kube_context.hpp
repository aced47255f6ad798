// fake_kube_context.hpp: the CLI's view of a FakeKubeServer (fake_kube_server.hpp) — its kubeconfig
// loaded by load_kube_context (cli/src/kube/kubeconfig.hpp) with no environment, as the kube tests
// that drive the CLI's own client (HttpsApi, PortForward, launch_agent) need it. Header-only: only
// targets linking mirrord_cli_core include it.
#pragma once

#include <optional>
#include <string>

#include "fake_kube_server.hpp"
#include "kube/kubeconfig.hpp"

namespace mirrord::test {

inline mirrord::cli::kube::KubeContext fake_kube_context(const FakeKubeServer& fake) {
    mirrord::cli::kube::LoadOptions options;
    options.kubeconfig = fake.kubeconfig_path();
    options.getenv = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
    return mirrord::cli::kube::load_kube_context(options);
}

}  // namespace mirrord::test
