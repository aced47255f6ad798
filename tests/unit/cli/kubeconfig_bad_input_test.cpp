// kubeconfig_bad_input_test.cpp: kubeconfig file fields (certificate-authority, client-certificate,
// client-key, tokenFile) that name something that is not a small file. Found with fuzz_kubeconfig:
// tokenFile/certificate-authority /dev/zero read without end until memory ran out, and a
// directory was read as an empty file, so a CA path naming a directory silently meant "use the
// system CAs". Both are now errors naming the kubeconfig, the context and the field.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "kube/kubeconfig.hpp"

using namespace mirrord::cli::kube;
using Catch::Matchers::Contains;

namespace {

namespace fs = std::filesystem;

struct ScratchDir {
    std::string path;
    ScratchDir() {
        std::string tmpl = (fs::temp_directory_path() / "kubeconfig_bad_input.XXXXXX").string();
        REQUIRE(mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~ScratchDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string write(const std::string& name, const std::string& content) const {
        std::string p = path + "/" + name;
        std::ofstream(p, std::ios::binary) << content;
        return p;
    }
};

std::string config_with(const std::string& cluster_extra, const std::string& user_extra) {
    return "current-context: ctx\n"
           "contexts: [{name: ctx, context: {cluster: c, user: u}}]\n"
           "clusters: [{name: c, cluster: {server: \"https://127.0.0.1:6443\"" + cluster_extra + "}}]\n"
           "users: [{name: u, user: {token: \"\"" + user_extra + "}}]\n";
}

std::string load_error(const std::string& kubeconfig) {
    LoadOptions o;
    o.kubeconfig = kubeconfig;
    o.getenv = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
    try {
        load_kube_context(o);
    } catch (const KubeconfigError& e) {
        return e.what();
    }
    FAIL("no KubeconfigError");
    return {};
}

}  // namespace

TEST_CASE("kubeconfig file fields reading dev zero stop with an error", "[kubeconfig]") {
    ScratchDir dir;
    // Before the fix this read until memory ran out (2 GiB rss limit in the fuzzer).
    auto token = dir.write("token.yaml", config_with("", ", tokenFile: /dev/zero"));
    CHECK_THAT(load_error(token), Contains("kubeconfig " + token + ": context \"ctx\": user \"u\": field "
                                           "\"tokenFile\": file /dev/zero is larger than 16 MiB"));
    auto ca = dir.write("ca.yaml", config_with(", certificate-authority: /dev/zero", ""));
    CHECK_THAT(load_error(ca), Contains("cluster \"c\": field \"certificate-authority\": file /dev/zero is "
                                        "larger than 16 MiB"));
}

TEST_CASE("kubeconfig file fields naming a directory are errors", "[kubeconfig]") {
    ScratchDir dir;
    fs::create_directories(dir.path + "/certs");
    auto ca = dir.write("ca.yaml", config_with(", certificate-authority: certs", ""));
    CHECK_THAT(load_error(ca), Contains("kubeconfig " + ca + ": context \"ctx\": cluster \"c\": field "
                                        "\"certificate-authority\": " + dir.path + "/certs is a directory"));
    auto key = dir.write("key.yaml", config_with("", ", client-certificate: certs, client-key: certs"));
    CHECK_THAT(load_error(key), Contains("field \"client-certificate\": " + dir.path + "/certs is a directory"));
    auto token = dir.write("token.yaml", config_with("", ", tokenFile: ."));
    std::string err = load_error(token);
    CHECK_THAT(err, Contains("field \"tokenFile\": " + dir.path));
    CHECK_THAT(err, Contains("is a directory, not a file"));
}

TEST_CASE("kubeconfig file fields at the size limit still load", "[kubeconfig]") {
    ScratchDir dir;
    std::string big(16 << 20, 'A');  // exactly the limit: accepted
    dir.write("big.pem", big);
    auto ok = dir.write("ok.yaml", config_with(", certificate-authority: big.pem", ""));
    LoadOptions o;
    o.kubeconfig = ok;
    o.getenv = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
    CHECK(load_kube_context(o).cluster.ca_pem.size() == big.size());
    dir.write("big.pem", big + "A");
    CHECK_THAT(load_error(ok), Contains("file " + dir.path + "/big.pem is larger than 16 MiB"));
}

TEST_CASE("a kubeconfig over the size limit or a directory is an error naming it", "[kubeconfig]") {
    // The kubeconfig itself is read with the same bound as its file fields (yaml-cpp's LoadFile
    // read any size).
    ScratchDir dir;
    std::string huge = dir.path + "/huge.yaml";
    { std::ofstream(huge) << "apiVersion: v1\n"; }
    fs::resize_file(huge, (16u << 20) + 1);  // sparse: no 16 MiB written
    CHECK_THAT(load_error(huge), Contains("kubeconfig " + huge + ": file " + huge + " is larger than 16 MiB"));
    CHECK_THAT(load_error(dir.path), Contains("kubeconfig " + dir.path + " (from the `kubeconfig` setting): a "
                                              "directory, not a file"));
}
