// kubeconfig.cpp: loads the user's kubeconfig as kubectl does (file choice, KUBECONFIG merge with
// first-definition-wins, context selection) and resolves the chosen context into the cluster, user
// and namespace the API client needs. Relative paths are resolved against the defining file's
// directory; *-data fields are base64-decoded (OpenSSL); file contents are read at load.
#include "kube/kubeconfig.hpp"

#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace mirrord::cli::kube {

namespace {

namespace fs = std::filesystem;

struct Entry {
    YAML::Node body;   // the inner map (cluster:/user:/context:)
    std::string file;  // the file that defined it
};

struct Merged {
    std::vector<std::string> files;
    std::map<std::string, Entry> clusters, users, contexts;
    std::vector<std::string> context_order;  // names, in merge order (for error messages)
    std::string current_context;
    std::string current_context_file;
};

std::string join(const std::vector<std::string>& items, const std::string& sep) {
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += sep;
        out += items[i];
    }
    return out;
}

[[noreturn]] void fail(const std::string& file, const std::string& what) {
    throw KubeconfigError("kubeconfig " + file + ": " + what);
}

std::optional<std::string> get_env(const LoadOptions& options, const std::string& name) {
    if (options.getenv) return options.getenv(name);
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
}

// Optional scalar string field; a non-scalar is an error naming the field.
std::optional<std::string> str_field(const YAML::Node& node, const char* key, const std::string& file,
                                     const std::string& where) {
    YAML::Node v = node[key];
    if (!v || v.IsNull()) return std::nullopt;
    if (!v.IsScalar()) fail(file, where + ": field \"" + key + "\" must be a string");
    return v.Scalar();
}

bool bool_field(const YAML::Node& node, const char* key, const std::string& file,
                const std::string& where) {
    YAML::Node v = node[key];
    if (!v || v.IsNull()) return false;
    bool out = false;
    if (!v.IsScalar() || !YAML::convert<bool>::decode(v, out)) {
        fail(file, where + ": field \"" + key + "\" must be true or false");
    }
    return out;
}

std::string base64_decode(const std::string& in, const std::string& file, const std::string& where,
                          const char* field) {
    std::string clean;
    clean.reserve(in.size());
    for (char c : in) {
        if (!std::isspace(static_cast<unsigned char>(c))) clean.push_back(c);
    }
    auto bad = [&]() { fail(file, where + ": field \"" + field + "\" is not valid base64"); };
    if (clean.empty() || clean.size() % 4 != 0) bad();
    std::string out(clean.size() / 4 * 3, '\0');
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(clean.data()),
                            static_cast<int>(clean.size()));
    if (n < 0) bad();
    size_t pad = 0;
    if (clean.back() == '=') ++pad;
    if (clean.size() >= 2 && clean[clean.size() - 2] == '=') ++pad;
    out.resize(static_cast<size_t>(n) - pad);
    return out;
}

std::string resolve_path(const std::string& path, const std::string& file) {
    fs::path p(path);
    if (p.is_absolute()) return path;
    return (fs::path(file).parent_path() / p).lexically_normal().string();
}

// Kubeconfigs, certificates, keys and tokens are small; a bound keeps a path naming /dev/zero
// or a huge file from exhausting memory. `what` prefixes every error.
constexpr std::streamsize kMaxFile = 16 << 20;

std::string read_bounded(const std::string& full, const std::string& file, const std::string& what) {
    std::error_code ec;
    if (fs::is_directory(full, ec)) fail(file, what + full + " is a directory, not a file");
    std::ifstream in(full, std::ios::binary);
    if (!in) fail(file, what + "cannot read file " + full);
    std::string out;
    char buf[65536];
    while (in) {
        in.read(buf, sizeof buf);
        out.append(buf, static_cast<size_t>(in.gcount()));
        if (static_cast<std::streamsize>(out.size()) > kMaxFile) {
            fail(file, what + "file " + full + " is larger than " + std::to_string(kMaxFile >> 20) + " MiB");
        }
    }
    if (in.bad()) fail(file, what + "cannot read file " + full);
    return out;
}

std::string read_file_field(const std::string& path, const std::string& file, const std::string& where,
                            const char* field) {
    return read_bounded(resolve_path(path, file), file, where + ": field \"" + field + "\": ");
}

// data wins over file, as in client-go.
std::string data_or_file(const YAML::Node& node, const char* data_key, const char* file_key,
                         const std::string& file, const std::string& where) {
    if (auto d = str_field(node, data_key, file, where); d && !d->empty()) {
        return base64_decode(*d, file, where, data_key);
    }
    if (auto f = str_field(node, file_key, file, where); f && !f->empty()) {
        return read_file_field(*f, file, where, file_key);
    }
    return {};
}

void merge_list(const YAML::Node& root, const char* list_key, const char* inner_key,
                const std::string& file, std::map<std::string, Entry>& into,
                std::vector<std::string>* order) {
    YAML::Node list = root[list_key];
    if (!list || list.IsNull()) return;
    if (!list.IsSequence()) fail(file, std::string("field \"") + list_key + "\" must be a list");
    size_t i = 0;
    for (const auto& item : list) {
        std::string where = std::string(list_key) + "[" + std::to_string(i++) + "]";
        if (!item.IsMap()) fail(file, where + " must be a map");
        auto name = str_field(item, "name", file, where);
        if (!name || name->empty()) fail(file, where + ": missing field \"name\"");
        YAML::Node body = item[inner_key];
        if (body && !body.IsNull() && !body.IsMap()) {
            fail(file, where + " (\"" + *name + "\"): field \"" + inner_key + "\" must be a map");
        }
        if (into.count(*name)) continue;  // first file defining a name wins
        into.emplace(*name, Entry{body ? body : YAML::Node(YAML::NodeType::Map), file});
        if (order) order->push_back(*name);
    }
}

void merge_file(const std::string& file, Merged& m) {
    std::string text = read_bounded(file, file, "");
    YAML::Node root;
    try {
        root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
        fail(file, std::string("invalid YAML: ") + e.what());
    }
    m.files.push_back(file);
    if (!root || root.IsNull()) return;  // an empty file is an empty config
    if (!root.IsMap()) fail(file, "not a kubeconfig (the document must be a map)");
    merge_list(root, "clusters", "cluster", file, m.clusters, nullptr);
    merge_list(root, "users", "user", file, m.users, nullptr);
    merge_list(root, "contexts", "context", file, m.contexts, &m.context_order);
    if (m.current_context.empty()) {
        if (auto cc = str_field(root, "current-context", file, "top level"); cc && !cc->empty()) {
            m.current_context = *cc;
            m.current_context_file = file;
        }
    }
}

std::vector<std::string> choose_files(const LoadOptions& options) {
    auto exists = [](const std::string& p) {
        std::error_code ec;
        return fs::is_regular_file(p, ec);
    };
    if (options.kubeconfig && !options.kubeconfig->empty()) {
        std::string p = *options.kubeconfig;
        if (p.rfind("~/", 0) == 0) {
            if (auto home = get_env(options, "HOME")) p = *home + p.substr(1);
        }
        std::error_code ec;
        if (fs::is_directory(p, ec)) {
            throw KubeconfigError("kubeconfig " + p + " (from the `kubeconfig` setting): a directory, not a file");
        }
        if (!exists(p)) throw KubeconfigError("kubeconfig " + p + " (from the `kubeconfig` setting): file not found");
        return {p};
    }
    if (auto env = get_env(options, "KUBECONFIG"); env && !env->empty()) {
        std::vector<std::string> listed, found;
        std::stringstream ss(*env);
        std::string item;
        while (std::getline(ss, item, ':')) {
            if (item.empty()) continue;
            listed.push_back(item);
            if (exists(item) &&
                std::find(found.begin(), found.end(), item) == found.end()) {
                found.push_back(item);
            }
        }
        if (found.empty()) {
            throw KubeconfigError("kubeconfig: none of the files in KUBECONFIG exists (" +
                                  join(listed, ", ") + ")");
        }
        return found;
    }
    auto home = get_env(options, "HOME");
    if (!home || home->empty()) {
        throw KubeconfigError("kubeconfig: no `kubeconfig` setting, KUBECONFIG and HOME are unset");
    }
    std::string p = *home + "/.kube/config";
    if (!exists(p)) throw KubeconfigError("kubeconfig " + p + ": file not found (set KUBECONFIG or `kubeconfig`)");
    return {p};
}

ExecPlugin parse_exec(const YAML::Node& node, const std::string& file, const std::string& where) {
    std::string w = where + ": exec";
    if (!node.IsMap()) fail(file, w + " must be a map");
    ExecPlugin p;
    auto api = str_field(node, "apiVersion", file, w);
    if (!api || api->empty()) fail(file, w + ": missing field \"apiVersion\"");
    if (*api != "client.authentication.k8s.io/v1" && *api != "client.authentication.k8s.io/v1beta1") {
        fail(file, w + ": field \"apiVersion\": unsupported \"" + *api +
                       "\" (client.authentication.k8s.io/v1 or /v1beta1)");
    }
    p.api_version = *api;
    auto cmd = str_field(node, "command", file, w);
    if (!cmd || cmd->empty()) fail(file, w + ": missing field \"command\"");
    p.command = *cmd;
    if (cmd->find('/') != std::string::npos) {  // absolute, so a later chdir does not matter
        std::error_code ec;
        auto abs = fs::absolute(resolve_path(*cmd, file), ec);
        p.command = ec ? resolve_path(*cmd, file) : abs.lexically_normal().string();
    }
    if (YAML::Node args = node["args"]; args && !args.IsNull()) {
        if (!args.IsSequence()) fail(file, w + ": field \"args\" must be a list");
        for (const auto& a : args) {
            if (!a.IsScalar()) fail(file, w + ": field \"args\" must be a list of strings");
            p.args.push_back(a.Scalar());
        }
    }
    if (YAML::Node env = node["env"]; env && !env.IsNull()) {
        if (!env.IsSequence()) fail(file, w + ": field \"env\" must be a list");
        size_t i = 0;
        for (const auto& e : env) {
            std::string we = w + ": env[" + std::to_string(i++) + "]";
            if (!e.IsMap()) fail(file, we + " must be a map with name and value");
            auto name = str_field(e, "name", file, we);
            if (!name || name->empty()) fail(file, we + ": missing field \"name\"");
            p.env.emplace_back(*name, str_field(e, "value", file, we).value_or(""));
        }
    }
    p.install_hint = str_field(node, "installHint", file, w).value_or("");
    p.provide_cluster_info = bool_field(node, "provideClusterInfo", file, w);
    p.interactive_mode = str_field(node, "interactiveMode", file, w).value_or("");
    if (!p.interactive_mode.empty() && p.interactive_mode != "Never" &&
        p.interactive_mode != "IfAvailable" && p.interactive_mode != "Always") {
        fail(file, w + ": field \"interactiveMode\": invalid \"" + p.interactive_mode +
                       "\" (Never, IfAvailable or Always)");
    }
    if (p.api_version == "client.authentication.k8s.io/v1" && p.interactive_mode.empty()) {
        fail(file, w + ": field \"interactiveMode\" is required for client.authentication.k8s.io/v1");
    }
    return p;
}

}  // namespace

KubeContext load_kube_context(const LoadOptions& options) {
    Merged m;
    for (const auto& f : choose_files(options)) merge_file(f, m);
    const std::string files = join(m.files, ", ");

    std::string ctx_name;
    if (options.context && !options.context->empty()) {
        ctx_name = *options.context;
    } else if (!m.current_context.empty()) {
        ctx_name = m.current_context;
    } else {
        throw KubeconfigError("kubeconfig " + files +
                              ": no current-context and no context given (`kube_context`)");
    }
    auto cit = m.contexts.find(ctx_name);
    if (cit == m.contexts.end()) {
        throw KubeconfigError("kubeconfig " + files + ": context \"" + ctx_name +
                              "\" not found (contexts: " +
                              (m.context_order.empty() ? std::string("none") : join(m.context_order, ", ")) +
                              ")");
    }
    const Entry& ce = cit->second;
    const std::string cwhere = "context \"" + ctx_name + "\"";

    KubeContext out;
    out.name = ctx_name;
    out.files = m.files;
    if (auto ns = str_field(ce.body, "namespace", ce.file, cwhere); ns && !ns->empty()) {
        out.namespace_name = *ns;
    }

    // Cluster.
    auto cluster_name = str_field(ce.body, "cluster", ce.file, cwhere);
    if (!cluster_name || cluster_name->empty()) fail(ce.file, cwhere + ": missing field \"cluster\"");
    auto clit = m.clusters.find(*cluster_name);
    if (clit == m.clusters.end()) {
        fail(files, cwhere + ": cluster \"" + *cluster_name + "\" not found");
    }
    {
        const Entry& e = clit->second;
        const std::string w = cwhere + ": cluster \"" + *cluster_name + "\"";
        ClusterInfo& c = out.cluster;
        c.name = *cluster_name;
        auto server = str_field(e.body, "server", e.file, w);
        if (!server || server->empty()) fail(e.file, w + ": missing field \"server\"");
        c.server = *server;
        if (c.server.find("://") == std::string::npos) {
            c.server = "https://" + c.server;  // client-go defaults a bare host:port to https
        } else if (c.server.rfind("https://", 0) != 0 && c.server.rfind("http://", 0) != 0) {
            fail(e.file, w + ": field \"server\": \"" + *server + "\" is not an http(s) URL");
        }
        c.ca_pem = data_or_file(e.body, "certificate-authority-data", "certificate-authority", e.file, w);
        c.insecure_skip_tls_verify = bool_field(e.body, "insecure-skip-tls-verify", e.file, w);
        c.tls_server_name = str_field(e.body, "tls-server-name", e.file, w).value_or("");
        c.proxy_url = str_field(e.body, "proxy-url", e.file, w).value_or("");
        if (options.accept_invalid_certificates) c.insecure_skip_tls_verify = true;
    }

    // User (optional, as kubectl allows an anonymous context).
    auto user_name = str_field(ce.body, "user", ce.file, cwhere);
    if (user_name && !user_name->empty()) {
        auto uit = m.users.find(*user_name);
        if (uit == m.users.end()) fail(files, cwhere + ": user \"" + *user_name + "\" not found");
        const Entry& e = uit->second;
        const std::string w = cwhere + ": user \"" + *user_name + "\"";
        UserInfo& u = out.user;
        u.name = *user_name;
        u.token = str_field(e.body, "token", e.file, w).value_or("");
        if (u.token.empty()) {
            if (auto tf = str_field(e.body, "tokenFile", e.file, w); tf && !tf->empty()) {
                std::string t = read_file_field(*tf, e.file, w, "tokenFile");
                auto b = t.find_first_not_of(" \t\r\n");
                auto en = t.find_last_not_of(" \t\r\n");
                u.token = b == std::string::npos ? std::string() : t.substr(b, en - b + 1);
                if (u.token.empty()) fail(e.file, w + ": field \"tokenFile\": file " +
                                                      resolve_path(*tf, e.file) + " is empty");
            }
        }
        u.client_cert_pem = data_or_file(e.body, "client-certificate-data", "client-certificate", e.file, w);
        u.client_key_pem = data_or_file(e.body, "client-key-data", "client-key", e.file, w);
        if (!u.client_cert_pem.empty() && u.client_key_pem.empty()) {
            fail(e.file, w + ": client-certificate given without client-key(-data)");
        }
        if (u.client_cert_pem.empty() && !u.client_key_pem.empty()) {
            fail(e.file, w + ": client-key given without client-certificate(-data)");
        }
        u.username = str_field(e.body, "username", e.file, w).value_or("");
        u.password = str_field(e.body, "password", e.file, w).value_or("");
        if (YAML::Node ex = e.body["exec"]; ex && !ex.IsNull()) u.exec = parse_exec(ex, e.file, w);
        if (YAML::Node ap = e.body["auth-provider"]; ap && !ap.IsNull() && !u.exec &&
                                                     u.token.empty() && u.client_cert_pem.empty()) {
            std::string apn = ap.IsMap() ? str_field(ap, "name", e.file, w).value_or("?") : "?";
            fail(e.file, w + ": field \"auth-provider\" (" + apn +
                             ") is not supported; use an exec credential plugin (e.g. gke-gcloud-auth-plugin, kubelogin)");
        }
    }
    return out;
}

}  // namespace mirrord::cli::kube
