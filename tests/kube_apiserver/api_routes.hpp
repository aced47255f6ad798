// api_routes.hpp: the Kubernetes REST API over the store: path parsing (/api/v1/..., /apis/G/V/...,
// namespaced and cluster-scoped), discovery, GET/LIST (selectors), watch streams, POST (create),
// PUT, PATCH, DELETE (propagation), pods/log, pods/ephemeralcontainers, admission (RBAC, Pod
// Security) and the kubelet hooks. Every error is thrown as ApiFailure (a Status).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "admission.hpp"
#include "http_types.hpp"
#include "kubelet.hpp"
#include "resources.hpp"
#include "store.hpp"

namespace fakekube {

struct PortForwardTarget {
    std::string name_space, pod, uid;
    std::vector<uint16_t> ports;
    int netns_fd = -1;  // owned by the caller; -1 with netns_error set when the pod has no netns
    std::string netns_error;
};

class ApiRoutes {
public:
    ApiRoutes(Store& store, const Policy& policy, Kubelet& kubelet, std::string server_address)
        : store_(store), policy_(policy), kubelet_(kubelet), server_address_(std::move(server_address)) {}

    Response handle(const Request& request);
    // For a WebSocket GET of pods/NAME/portforward: checks path, RBAC, pod and ports.
    PortForwardTarget resolve_portforward(const Request& request);

private:
    struct Route {
        const ResourceType* type = nullptr;
        std::string ns;
        std::string name;
        std::string sub;
    };
    Route parse(const std::string& path);
    Response list(const Route& route, const Request& request);
    Response watch(const Route& route, const Request& request);
    Response get(const Route& route, const Request& request);
    Response create(const Route& route, const Request& request);
    Response replace(const Route& route, const Request& request);
    Response patch(const Route& route, const Request& request);
    Response remove(const Route& route, const Request& request);
    Response remove_collection(const Route& route, const Request& request);
    Response logs(const Route& route, const Request& request);
    nlohmann::json update_ephemeral(const Route& route, const std::function<nlohmann::json(const nlohmann::json&)>& compute);
    void delete_object_effects(const ResourceType& type, const nlohmann::json& object, const std::string& propagation);
    void require_namespace(const std::string& ns);

    Store& store_;
    const Policy& policy_;
    Kubelet& kubelet_;
    std::string server_address_;
};

}  // namespace fakekube
