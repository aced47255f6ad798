// main.cpp: entry of mirrord-agent. Option parsing is in place; serving clients (env, files, DNS,
// outgoing, incoming) arrives with the "mirrord-agent" issue.
#include <CLI/CLI.hpp>

#include <iostream>
#include <string>

int main(int argc, char** argv) {
    CLI::App app{"mirrord-agent (mirrord-native): serves a target's network, files, DNS and env "
                 "to mirrord clients",
                 "mirrord-agent"};
    app.set_version_flag("-V,--version", std::string("mirrord-agent ") + MIRRORD_VERSION);
    std::string listen = "127.0.0.1:0";
    long target_pid = 0;
    unsigned ttl = 30;
    app.add_option("-l,--listen", listen, "address to listen on (port 0 = pick one)");
    app.add_option("--target-pid", target_pid, "pid whose namespaces to enter (none = targetless)");
    app.add_option("-t,--ttl", ttl, "seconds to live with no client");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    std::cerr << "mirrord-agent: serving is not available yet in mirrord-native " << MIRRORD_VERSION
              << " (arrives with the 'mirrord-agent' issue)\n";
    return 1;
}
