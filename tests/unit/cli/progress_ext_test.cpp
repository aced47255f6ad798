// progress_ext_test.cpp: the progress output forms and the `ext` JSON line contract — NewTask /
// FinishedTask / Warning / Info lines exactly as mirrord's progress crate serializes them (key
// order, null parent/message), fail-on-drop, the human form on stderr, MIRRORD_PROGRESS_MODE
// parsing, and the execution info JSON of `ext`'s last line.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <sstream>

#include "exec/execution.hpp"
#include "exec/progress.hpp"

using namespace mirrord::cli::exec;

namespace {

struct Captured {
    std::ostringstream out, err;
    std::shared_ptr<ProgressOutput> output(ProgressMode mode) {
        auto o = std::make_shared<ProgressOutput>();
        o->mode = mode;
        o->out = &out;
        o->err = &err;
        return o;
    }
    std::vector<std::string> out_lines() const {
        std::vector<std::string> lines;
        std::istringstream in(out.str());
        for (std::string l; std::getline(in, l);) {
            lines.push_back(l);
        }
        return lines;
    }
};

}  // namespace

TEST_CASE("progress: JSON lines as mirrord's ProgressMessage") {
    CHECK(json_new_task("mirrord preparing to launch", std::nullopt) ==
          R"({"type":"NewTask","name":"mirrord preparing to launch","parent":null})");
    CHECK(json_new_task("starting agent", std::string("mirrord preparing to launch")) ==
          R"({"type":"NewTask","name":"starting agent","parent":"mirrord preparing to launch"})");
    CHECK(json_finished_task("x", true, std::string("done")) ==
          R"({"type":"FinishedTask","name":"x","success":true,"message":"done"})");
    CHECK(json_finished_task("x", false, std::nullopt) ==
          R"({"type":"FinishedTask","name":"x","success":false,"message":null})");
    CHECK(json_warning("w \"q\"") == R"({"type":"Warning","message":"w \"q\""})");
    CHECK(json_info("i") == R"({"type":"Info","message":"i"})");
}

TEST_CASE("progress: a JSON task tree, and a dropped task reports failure with a null message") {
    Captured c;
    {
        auto root = ProgressTask::root(c.output(ProgressMode::Json), "mirrord preparing to launch");
        {
            auto sub = root.subtask("starting agent");
            sub.info("hello");
            sub.success("agent ready");
        }
        {
            auto sub = root.subtask("fetching remote environment");
            root.warning("careful");
        }  // dropped: failure
        root.success("{\"environment\":{}}");
    }
    auto lines = c.out_lines();
    REQUIRE(lines.size() == 8);
    CHECK(lines[0] == R"({"type":"NewTask","name":"mirrord preparing to launch","parent":null})");
    CHECK(lines[1] == R"({"type":"NewTask","name":"starting agent","parent":"mirrord preparing to launch"})");
    CHECK(lines[2] == R"({"type":"Info","message":"hello"})");
    CHECK(lines[3] == R"({"type":"FinishedTask","name":"starting agent","success":true,"message":"agent ready"})");
    CHECK(lines[5] == R"({"type":"Warning","message":"careful"})");
    CHECK(lines[6] ==
          R"({"type":"FinishedTask","name":"fetching remote environment","success":false,"message":null})");
    auto last = nlohmann::json::parse(lines[7]);
    CHECK(last["type"] == "FinishedTask");
    CHECK(last["name"] == "mirrord preparing to launch");
    CHECK(last["success"] == true);
    CHECK(nlohmann::json::parse(last["message"].get<std::string>())["environment"].is_object());
    CHECK(c.err.str().empty());
}

TEST_CASE("progress: human lines on stderr, simple on stdout, off prints nothing") {
    Captured human;
    {
        auto root = ProgressTask::root(human.output(ProgressMode::Std), "mirrord exec (cli version 1)");
        auto sub = root.subtask("preparing to launch process");
        auto agent = sub.subtask("starting agent");
        agent.success("agent ready");
        sub.warning("w");
        sub.failure("it broke");
    }
    CHECK(human.out.str().empty());
    CHECK(human.err.str() ==
          "mirrord exec (cli version 1)\n"
          "    \u2713 agent ready\n"
          "  ! w\n"
          "  x it broke\n"
          "x mirrord exec (cli version 1)\n");

    Captured simple;
    {
        auto root = ProgressTask::root(simple.output(ProgressMode::Simple), "title");
        auto sub = root.subtask("sub");
        sub.success("ok");
        root.info("i");
        root.success(std::nullopt);
    }
    CHECK(simple.out.str() == "title\nsub\nok\ni\n");

    Captured off;
    {
        auto root = ProgressTask::root(off.output(ProgressMode::Off), "title");
        root.subtask("x").success("y");
        root.warning("w");
    }
    CHECK(off.out.str().empty());
    CHECK(off.err.str().empty());
}

TEST_CASE("progress: MIRRORD_PROGRESS_MODE values") {
    CHECK(progress_mode_from(nullptr, ProgressMode::Json) == ProgressMode::Json);
    CHECK(progress_mode_from(nullptr, ProgressMode::Std) == ProgressMode::Std);
    CHECK(progress_mode_from("json", ProgressMode::Std) == ProgressMode::Json);
    CHECK(progress_mode_from("off", ProgressMode::Json) == ProgressMode::Off);
    CHECK(progress_mode_from("std", ProgressMode::Json) == ProgressMode::Std);
    CHECK(progress_mode_from("standard", ProgressMode::Json) == ProgressMode::Std);
    CHECK(progress_mode_from("simple", ProgressMode::Json) == ProgressMode::Simple);
    CHECK(progress_mode_from("dumb", ProgressMode::Json) == ProgressMode::Simple);
    CHECK(progress_mode_from("bogus", ProgressMode::Std) == ProgressMode::Std);
}

TEST_CASE("ext: execution info JSON has mirrord's MirrordExecution shape") {
    Execution e;
    e.environment = {{"LD_PRELOAD", "/l.so"}, {"MIRRORD_LAYER_INTPROXY_ADDR", "127.0.0.1:1"}, {"POD", "p"}};
    e.env_to_unset = {"AWS_PROFILE"};
    std::string text = execution_json(e);
    CHECK(text.find(R"({"environment":{)") == 0);
    auto j = nlohmann::json::parse(text);
    CHECK(j.size() == 4);
    CHECK(j["environment"]["POD"] == "p");
    CHECK(j["environment"]["LD_PRELOAD"] == "/l.so");
    CHECK(j["patched_path"].is_null());
    CHECK(j["env_to_unset"] == nlohmann::json::array({"AWS_PROFILE"}));
    CHECK(j["uses_operator"] == false);
    // key order as serde writes the struct's fields
    CHECK(text.find("\"patched_path\"") < text.find("\"env_to_unset\""));
    CHECK(text.find("\"env_to_unset\"") < text.find("\"uses_operator\""));
}
