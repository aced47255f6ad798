// progress.cpp: the progress forms of progress.hpp (json lines, human lines, simple, off).
#include "exec/progress.hpp"

#include <nlohmann/json.hpp>

#include <cstring>
#include <ostream>

namespace mirrord::cli::exec {

namespace {

using ojson = nlohmann::ordered_json;

std::string dump(const ojson& j) {
    // Invalid UTF-8 (a remote env value...) is replaced rather than throwing.
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

ojson optional_string(const std::optional<std::string>& s) {
    return s ? ojson(*s) : ojson(nullptr);
}

std::string indent(int depth) {
    return std::string(static_cast<size_t>(depth) * 2, ' ');
}

std::string json_message(const char* type, const std::string& message) {
    ojson j;
    j["type"] = type;
    j["message"] = message;
    return dump(j);
}

}  // namespace

ProgressMode progress_mode_from(const char* value, ProgressMode fallback) {
    if (value == nullptr) {
        return fallback;
    }
    if (std::strcmp(value, "json") == 0) {
        return ProgressMode::Json;
    }
    if (std::strcmp(value, "off") == 0) {
        return ProgressMode::Off;
    }
    if (std::strcmp(value, "std") == 0 || std::strcmp(value, "standard") == 0) {
        return ProgressMode::Std;
    }
    if (std::strcmp(value, "simple") == 0 || std::strcmp(value, "dumb") == 0) {
        return ProgressMode::Simple;
    }
    return fallback;
}

std::string json_new_task(const std::string& name, const std::optional<std::string>& parent) {
    ojson j;
    j["type"] = "NewTask";
    j["name"] = name;
    j["parent"] = optional_string(parent);
    return dump(j);
}

std::string json_finished_task(const std::string& name, bool success, const std::optional<std::string>& message) {
    ojson j;
    j["type"] = "FinishedTask";
    j["name"] = name;
    j["success"] = success;
    j["message"] = optional_string(message);
    return dump(j);
}

std::string json_warning(const std::string& message) {
    return json_message("Warning", message);
}

std::string json_info(const std::string& message) {
    return json_message("Info", message);
}

ProgressTask::ProgressTask(std::shared_ptr<ProgressOutput> output, std::string name,
                           std::optional<std::string> parent, int depth)
    : output_(std::move(output)), name_(std::move(name)), parent_(std::move(parent)), depth_(depth) {
    // The spinner's line of a subtask only stays once finished; the root's title stays.
    emit(json_new_task(name_, parent_), name_, depth_ == 0 ? std::optional<std::string>(name_) : std::nullopt);
}

ProgressTask::ProgressTask(ProgressTask&& other) noexcept
    : output_(std::move(other.output_)),
      name_(std::move(other.name_)),
      parent_(std::move(other.parent_)),
      depth_(other.depth_),
      done_(other.done_) {
    other.done_ = true;
}

ProgressTask::~ProgressTask() {
    if (!done_ && output_) {
        try {
            finish(false, std::nullopt);
        } catch (...) {
        }
    }
}

ProgressTask ProgressTask::root(std::shared_ptr<ProgressOutput> output, const std::string& title) {
    return ProgressTask(std::move(output), title, std::nullopt, 0);
}

ProgressTask ProgressTask::subtask(const std::string& name) const {
    return ProgressTask(output_, name, name_, depth_ + 1);
}

void ProgressTask::success(const std::optional<std::string>& message) {
    finish(true, message);
}

void ProgressTask::failure(const std::optional<std::string>& message) {
    finish(false, message);
}

void ProgressTask::finish(bool ok, const std::optional<std::string>& message) {
    if (done_) {
        return;
    }
    done_ = true;
    emit(json_finished_task(name_, ok, message), message,
         indent(depth_) + (ok ? "\u2713 " : "x ") + message.value_or(name_));
}

void ProgressTask::warning(const std::string& message) const {
    emit(json_warning(message), message, indent(depth_) + "! " + message);
}

void ProgressTask::info(const std::string& message) const {
    emit(json_info(message), message, indent(depth_) + "* " + message);
}

void ProgressTask::emit(const std::string& json_line, const std::optional<std::string>& simple_line,
                        const std::optional<std::string>& std_line) const {
    switch (output_->mode) {
        case ProgressMode::Json:
            *output_->out << json_line << std::endl;
            break;
        case ProgressMode::Simple:
            if (simple_line) {
                *output_->out << *simple_line << std::endl;
            }
            break;
        case ProgressMode::Std:
            if (std_line) {
                *output_->err << *std_line << std::endl;
            }
            break;
        case ProgressMode::Off:
            break;
    }
}

}  // namespace mirrord::cli::exec
