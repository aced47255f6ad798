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
    ojson j;
    j["type"] = "Warning";
    j["message"] = message;
    return dump(j);
}

std::string json_info(const std::string& message) {
    ojson j;
    j["type"] = "Info";
    j["message"] = message;
    return dump(j);
}

ProgressTask::ProgressTask(std::shared_ptr<ProgressOutput> output, std::string name,
                           std::optional<std::string> parent, int depth)
    : output_(std::move(output)), name_(std::move(name)), parent_(std::move(parent)), depth_(depth) {
    switch (output_->mode) {
        case ProgressMode::Json:
            *output_->out << json_new_task(name_, parent_) << std::endl;
            break;
        case ProgressMode::Simple:
            *output_->out << name_ << std::endl;
            break;
        case ProgressMode::Std:
            // The spinner's line of a subtask only stays once finished; the root's title stays.
            if (depth_ == 0) {
                *output_->err << name_ << std::endl;
            }
            break;
        case ProgressMode::Off:
            break;
    }
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
    switch (output_->mode) {
        case ProgressMode::Json:
            *output_->out << json_finished_task(name_, ok, message) << std::endl;
            break;
        case ProgressMode::Simple:
            if (message) {
                *output_->out << *message << std::endl;
            }
            break;
        case ProgressMode::Std:
            *output_->err << indent(depth_) << (ok ? "\u2713 " : "x ") << message.value_or(name_) << std::endl;
            break;
        case ProgressMode::Off:
            break;
    }
}

void ProgressTask::warning(const std::string& message) const {
    switch (output_->mode) {
        case ProgressMode::Json:
            *output_->out << json_warning(message) << std::endl;
            break;
        case ProgressMode::Simple:
            *output_->out << message << std::endl;
            break;
        case ProgressMode::Std:
            *output_->err << indent(depth_) << "! " << message << std::endl;
            break;
        case ProgressMode::Off:
            break;
    }
}

void ProgressTask::info(const std::string& message) const {
    switch (output_->mode) {
        case ProgressMode::Json:
            *output_->out << json_info(message) << std::endl;
            break;
        case ProgressMode::Simple:
            *output_->out << message << std::endl;
            break;
        case ProgressMode::Std:
            *output_->err << indent(depth_) << "* " << message << std::endl;
            break;
        case ProgressMode::Off:
            break;
    }
}

}  // namespace mirrord::cli::exec
