// env_dotenv_test.cpp: the dotenv parser used for feature.env.env_file / --env-file behaves as
// dotenvy 0.15.7 (the crate mirrord uses): comments, export, quotes, escapes, substitution,
// multi-line values, and clear errors naming the line.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>

#include "exec/dotenv.hpp"

using namespace mirrord::cli::exec;

namespace {

std::map<std::string, std::string> parse(const std::string& text,
                                         std::map<std::string, std::string> local = {}) {
    auto lookup = [local](const std::string& name) -> std::optional<std::string> {
        auto it = local.find(name);
        return it == local.end() ? std::nullopt : std::optional<std::string>(it->second);
    };
    std::map<std::string, std::string> out;
    for (auto& [k, v] : parse_dotenv(text, lookup)) {
        out[k] = v;
    }
    return out;
}

}  // namespace

TEST_CASE("dotenv: plain values, comments, blank lines and export") {
    auto env = parse(
        "# a comment\n"
        "\n"
        "KEY=1\n"
        "   # indented comment\n"
        "export SHELL_LOVER=1\n"
        "export=x\n"
        "WITH.DOT=d\n"
        "KEY9=   # only a comment\n"
        "EMPTY=\n"
        "SPACES_AROUND = v\n"
        "TRAILING=value   # comment\n"
        "HASH_INSIDE=a#b\n");
    CHECK(env.at("KEY") == "1");
    CHECK(env.at("SHELL_LOVER") == "1");
    CHECK(env.at("export") == "x");
    CHECK(env.at("WITH.DOT") == "d");
    CHECK(env.at("KEY9") == "");
    CHECK(env.at("EMPTY") == "");
    CHECK(env.at("SPACES_AROUND") == "v");
    CHECK(env.at("TRAILING") == "value");
    CHECK(env.at("HASH_INSIDE") == "a#b");
    CHECK(env.size() == 9);
}

TEST_CASE("dotenv: quotes and escapes") {
    auto env = parse(
        "S='fo ur'\n"
        "D=\"fi ve\"\n"
        "E=s\\ ix\n"
        "LITERAL='sweet $\\fgs'\\''fds'\n"
        "ESC=\"awesome stuff \\\"mang\\\"\"\n"
        "NL=\"a\\nb\"\n"
        "QUOTED_HASH=\"x # not a comment\"\n"
        "AFTER=\"lol\" #well\n"
        "CRLF=crlf\r\n");
    CHECK(env.at("S") == "fo ur");
    CHECK(env.at("D") == "fi ve");
    CHECK(env.at("E") == "s ix");
    CHECK(env.at("LITERAL") == "sweet $\\fgs'fds");
    CHECK(env.at("ESC") == "awesome stuff \"mang\"");
    CHECK(env.at("NL") == "a\nb");
    CHECK(env.at("QUOTED_HASH") == "x # not a comment");
    CHECK(env.at("AFTER") == "lol");
    CHECK(env.at("CRLF") == "crlf");
}

TEST_CASE("dotenv: quoted values may span lines") {
    auto env = parse("CERT=\"line1\nline2\"\nNEXT='a\nb'\nLAST=z\n");
    CHECK(env.at("CERT") == "line1\nline2");
    CHECK(env.at("NEXT") == "a\nb");
    CHECK(env.at("LAST") == "z");
}

TEST_CASE("dotenv: substitution from the local env first, then earlier lines") {
    auto env = parse(
        "KEY=VALUE\n"
        "TWICE=$KEY$KEY\n"
        "BRACED=\"${KEY}\"\n"
        "PLAIN_IN_QUOTES=\"$KEY\"\n"
        "MISSING=>$NOPE<>${NOPE2}<\n"
        "SEP=$KEY1_2\n"
        "KEY1=k1\n"
        "SEP2=$KEY1_2\n"
        "FROM_LOCAL=${HOME_X}\n"
        "HOME_X=file\n"
        "NOSUB='${KEY}'\n"
        "ESCAPED=\\$KEY\n",
        {{"HOME_X", "local"}});
    CHECK(env.at("TWICE") == "VALUEVALUE");
    CHECK(env.at("BRACED") == "VALUE");
    CHECK(env.at("PLAIN_IN_QUOTES") == "VALUE");
    CHECK(env.at("MISSING") == "><><");
    CHECK(env.at("SEP") == "_2");  // `_` ends a $NAME, as in dotenvy
    CHECK(env.at("SEP2") == "k1_2");
    CHECK(env.at("FROM_LOCAL") == "local");  // the local env wins over the file
    CHECK(env.at("HOME_X") == "file");
    CHECK(env.at("NOSUB") == "${KEY}");
    CHECK(env.at("ESCAPED") == "$KEY");
}

TEST_CASE("dotenv: a later definition wins and order is kept") {
    auto pairs = parse_dotenv("A=1\nB=2\nA=3\n", nullptr);
    REQUIRE(pairs.size() == 3);
    CHECK(pairs[0] == std::make_pair(std::string("A"), std::string("1")));
    CHECK(pairs[2] == std::make_pair(std::string("A"), std::string("3")));
}

TEST_CASE("dotenv: malformed lines are errors naming the line") {
    auto error_of = [](const std::string& text) {
        try {
            parse_dotenv(text, nullptr);
        } catch (const DotenvError& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    CHECK(error_of("OK=1\n  invalid\n").find("line 2") != std::string::npos);
    CHECK(error_of("KEY =val\nKEY2 val\n").find("line 2") != std::string::npos);
    CHECK(error_of("=value\n").find("line 1") != std::string::npos);
    CHECK(error_of("K=my uncool value\n").find("whitespace") != std::string::npos);
    CHECK(error_of("K=\"why\n").find("unterminated") != std::string::npos);
    CHECK(error_of("K=h\\8u\n").find("escape") != std::string::npos);
    CHECK(error_of("K=>${KEY{<\n").find("line 1") != std::string::npos);
    CHECK(error_of("1ABC=x\n").find("variable name") != std::string::npos);
}

TEST_CASE("dotenv: files, BOM, and an unreadable file") {
    std::string path = "/tmp/mirrord-unit-dotenv-" + std::to_string(::getpid()) + ".env";
    {
        std::ofstream f(path, std::ios::binary);
        f << "\xEF\xBB\xBF" << "FIRST=1\nexport SECOND='two'\n";
    }
    auto pairs = read_dotenv_file(path, nullptr);
    std::remove(path.c_str());
    REQUIRE(pairs.size() == 2);
    CHECK(pairs[0].first == "FIRST");
    CHECK(pairs[1].second == "two");
    try {
        read_dotenv_file("/nonexistent/dir/x.env", nullptr);
        FAIL("no error");
    } catch (const DotenvError& e) {
        CHECK(std::string(e.what()).find("/nonexistent/dir/x.env") != std::string::npos);
    }
}
