// run_command.hpp: run a program as a child of the test and collect its exit status, stdout and
// stderr, with a timeout (built on process.hpp). Used by FakeKubeServer::call (curl) and by the
// kube_apiserver test's independent clients (python, kubectl).
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace mirrord::test {

struct CommandResult {
    int exit_code = -1;  // exit status, 128 + signal if killed, -1 if it outlived the timeout
    std::string out, err;
};

// Runs argv with this process's environment plus extra_env ("K=V"). Reads stdout and stderr until
// both close or the timeout passes; a child still running after that (+2 s) is SIGKILLed.
CommandResult run_command(const std::vector<std::string>& argv,
                          std::chrono::milliseconds timeout = std::chrono::seconds(90),
                          const std::vector<std::string>& extra_env = {});

}  // namespace mirrord::test
