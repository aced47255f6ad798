// dotenv.hpp: `.env` file parsing for `feature.env.env_file` / `--env-file`, following the
// dotenvy crate (0.15.7) that mirrord uses (dotenv/src/{iter,parse}.rs):
//   - blank lines and lines starting with `#` are skipped; optional `export ` prefix;
//   - key: starts with a letter or `_`, then letters, digits, `_`, `.`; spaces around `=` allowed;
//   - unquoted value: ends at whitespace, which may only be followed by a `# comment`;
//     `\` escapes one of \ ' " $ space, `\n` is a newline;
//   - '...' literal (no escapes, no substitution); "..." with the escapes above and substitution;
//     quoted values may span lines;
//   - substitution `$NAME` (NAME = letters/digits) and `${NAME}`: the local process environment
//     first, then variables defined earlier in the file, else empty;
//   - an empty value (or only a comment) gives "".
// Later definitions of a key win (the caller inserts in order). A UTF-8 BOM is skipped.
#pragma once

#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mirrord::cli::exec {

class DotenvError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Looks a name up in the local environment (nullopt = not set).
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

// Parses the whole text. Throws DotenvError "line N: ... (in 'LINE')" naming the bad line.
std::vector<std::pair<std::string, std::string>> parse_dotenv(std::string_view text, const EnvLookup& lookup);

// Reads and parses a file. Throws DotenvError naming the file (unreadable, or the bad line).
std::vector<std::pair<std::string, std::string>> read_dotenv_file(const std::string& path, const EnvLookup& lookup);

}  // namespace mirrord::cli::exec
