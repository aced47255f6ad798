// progress.hpp: progress reporting of `mirrord exec` / `mirrord ext`, as mirrord's progress crate
// (mirrord/progress/src/{lib,implementations}.rs) prints it. MIRRORD_PROGRESS_MODE picks the form:
//   json           one JSON object per line on stdout (the IDE extensions' contract):
//                  {"type":"NewTask","name":..,"parent":..}, {"type":"FinishedTask","name":..,
//                  "success":..,"message":..|null}, {"type":"Warning","message":..},
//                  {"type":"Info","message":..}
//   std|standard   human lines on stderr: what mirrord's spinner leaves on screen, without the
//                  spinner ("✓ msg", "x msg", "! warning", "* info", indented per task level)
//   simple|dumb    every text as a plain line on stdout (mirrord's SimpleProgress)
//   off            nothing
// A task dropped without success()/failure() reports failure with no message (mirrord's
// fail_on_drop), so an error path always closes its tasks.
#pragma once

#include <iosfwd>
#include <memory>
#include <optional>
#include <string>

namespace mirrord::cli::exec {

enum class ProgressMode { Off, Json, Std, Simple };

// Maps MIRRORD_PROGRESS_MODE's value (nullptr = unset) to a mode; unset or unknown -> `fallback`.
ProgressMode progress_mode_from(const char* value, ProgressMode fallback);

// Where lines go; shared by every task of one run.
struct ProgressOutput {
    ProgressMode mode = ProgressMode::Std;
    std::ostream* out = nullptr;  // json / simple
    std::ostream* err = nullptr;  // std
};

class ProgressTask {
public:
    // The root task (prints NewTask with parent null, or the title line).
    static ProgressTask root(std::shared_ptr<ProgressOutput> output, const std::string& title);

    ProgressTask(ProgressTask&& other) noexcept;
    ProgressTask& operator=(ProgressTask&&) = delete;
    ProgressTask(const ProgressTask&) = delete;
    ~ProgressTask();

    ProgressTask subtask(const std::string& name) const;
    void success(const std::optional<std::string>& message = std::nullopt);
    void failure(const std::optional<std::string>& message = std::nullopt);
    void warning(const std::string& message) const;
    void info(const std::string& message) const;
    bool done() const { return done_; }
    const std::string& name() const { return name_; }

private:
    ProgressTask(std::shared_ptr<ProgressOutput> output, std::string name, std::optional<std::string> parent,
                 int depth);
    void finish(bool ok, const std::optional<std::string>& message);
    // Writes the line of the output's mode: json_line (stdout), simple_line (stdout) or std_line
    // (stderr); an absent one writes nothing.
    void emit(const std::string& json_line, const std::optional<std::string>& simple_line,
              const std::optional<std::string>& std_line) const;

    std::shared_ptr<ProgressOutput> output_;
    std::string name_;
    std::optional<std::string> parent_;
    int depth_ = 0;
    bool done_ = false;
};

// One JSON progress line (no newline), exactly as mirrord's ProgressMessage serializes.
std::string json_new_task(const std::string& name, const std::optional<std::string>& parent);
std::string json_finished_task(const std::string& name, bool success, const std::optional<std::string>& message);
std::string json_warning(const std::string& message);
std::string json_info(const std::string& message);

}  // namespace mirrord::cli::exec
