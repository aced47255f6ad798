// fuzz_kubeconfig.cpp: libFuzzer target for the kubeconfig loader (cli/src/kube/kubeconfig.cpp):
// YAML, KUBECONFIG merging, context/cluster/user resolution, base64 *-data fields, file fields,
// exec plugin stanzas (parsed only: nothing is ever run). The input is split on the line
// "#--next-file--" into up to 3 kubeconfig files, written to a private temp dir under $TMPDIR
// (run_fuzzer.sh points it into its work dir, which the next run wipes, so a crash leaves nothing
// in /tmp; removed at a normal exit) and loaded through KUBECONFIG=a:b:c; the dir also holds small ca.crt/token files so relative
// file fields can succeed. Byte 0 picks options: bit 0 accept_invalid_certificates, bit 1 an
// explicit context "fuzz". Every failure must be a KubeconfigError whose message names a kubeconfig.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "kube/kubeconfig.hpp"

using namespace mirrord::cli::kube;

namespace {

std::string g_dir;

void remove_dir() {
    if (!g_dir.empty()) {
        std::error_code ec;
        std::filesystem::remove_all(g_dir, ec);
    }
}

void write_file(const std::string& path, std::string_view content) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    if (!out) {
        std::fprintf(stderr, "cannot write %s\n", path.c_str());
        std::abort();
    }
}

[[noreturn]] void invariant_failed(const char* what, const std::string& detail) {
    std::fprintf(stderr, "INVARIANT FAILED: %s\n%s\n", what, detail.c_str());
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fuzz_kubeconfig.XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) {
        std::perror("mkdtemp");
        std::abort();
    }
    g_dir = tmpl;
    std::atexit(remove_dir);
    std::filesystem::create_directories(g_dir + "/certs");
    write_file(g_dir + "/certs/ca.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    write_file(g_dir + "/certs/client.crt", "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n");
    write_file(g_dir + "/certs/client.key", "-----BEGIN PRIVATE KEY-----\nMIID\n-----END PRIVATE KEY-----\n");
    write_file(g_dir + "/token.txt", "  fuzz-token\n");
    write_file(g_dir + "/empty.txt", "");
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const unsigned mode = data[0];
    std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

    std::vector<std::string_view> parts;
    constexpr std::string_view kSplit = "\n#--next-file--\n";
    while (parts.size() < 2) {
        auto at = text.find(kSplit);
        if (at == std::string_view::npos) break;
        parts.push_back(text.substr(0, at));
        text = text.substr(at + kSplit.size());
    }
    parts.push_back(text);

    std::string list;
    for (size_t i = 0; i < parts.size(); ++i) {
        std::string path = g_dir + "/config" + std::to_string(i);
        write_file(path, parts[i]);
        list += (i ? ":" : "") + path;
    }

    LoadOptions options;
    options.accept_invalid_certificates = (mode & 1) != 0;
    if (mode & 2) options.context = "fuzz";
    options.getenv = [&](const std::string& name) -> std::optional<std::string> {
        if (name == "KUBECONFIG") return list;
        return std::nullopt;
    };
    try {
        KubeContext ctx = load_kube_context(options);
        if (ctx.files.size() != parts.size()) invariant_failed("files read != files given", list);
        if (ctx.cluster.server.rfind("https://", 0) != 0 && ctx.cluster.server.rfind("http://", 0) != 0) {
            invariant_failed("server is not an http(s) URL", ctx.cluster.server);
        }
        if (ctx.namespace_name.empty()) invariant_failed("empty namespace", ctx.name);
        if (options.accept_invalid_certificates && !ctx.cluster.insecure_skip_tls_verify) {
            invariant_failed("accept_invalid_certificates did not force insecure", ctx.name);
        }
        if (ctx.user.client_cert_pem.empty() != ctx.user.client_key_pem.empty()) {
            invariant_failed("client certificate without key (or the reverse)", ctx.name);
        }
        if (ctx.user.exec && ctx.user.exec->command.empty()) invariant_failed("exec without command", ctx.name);
    } catch (const KubeconfigError& e) {
        if (std::string_view(e.what()).rfind("kubeconfig ", 0) != 0) {
            invariant_failed("error does not name the kubeconfig", e.what());
        }
    }
    return 0;
}
