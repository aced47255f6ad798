// template.hpp: the subset of the Tera template language that mirrord config files use. mirrord
// renders every config file with Tera before parsing it; users write things like
//   "target": "{{ get_env(name="TARGET", default="pod/fallback") }}"
//   "key": "{{ git_branch | default(value='shared') }}"
// Supported: {{ expr }} (also {{- -}}), {# comments #}, {% raw %}...{% endraw %}; expressions
// made of string/number/bool literals, the variables given by the context (mirrord provides
// `key` and `git_branch`), get_env(name=..., default=...), the `~` concatenation operator and
// the filters default(value=...), lower, upper, trim, replace(from=..., to=...).
// Anything else (other {% %} tags, other functions/filters) fails with a clear error and the
// line/column, instead of rendering something subtly different from mirrord.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "mirrord/config/errors.hpp"

namespace mirrord::config {

struct TemplateContext {
    // Value of a template variable, or nullopt when it is not defined.
    std::function<std::optional<std::string>(std::string_view)> variable;
    // Value of an environment variable for get_env(), or nullopt when unset.
    std::function<std::optional<std::string>(std::string_view)> env;
};

// Renders `text`. Throws ConfigError (path "", location set) on unsupported syntax, unknown
// variables, or get_env() of an unset variable without a default.
std::string render_template(std::string_view text, const TemplateContext& context,
                            const std::string& source);

// True when `text` contains template syntax at all ({{, {% or {#).
bool has_template_syntax(std::string_view text);

}  // namespace mirrord::config
