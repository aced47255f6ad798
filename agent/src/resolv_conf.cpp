// resolv_conf.cpp: resolv.conf and hosts parsing (see resolv_conf.hpp).
#include "resolv_conf.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

namespace mirrord::agent {

namespace {

std::vector<std::string_view> split_words(std::string_view line) {
    std::vector<std::string_view> words;
    size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) {
            ++i;
        }
        size_t start = i;
        while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r') {
            ++i;
        }
        if (i > start) {
            words.push_back(line.substr(start, i - start));
        }
    }
    return words;
}

template <typename F>
void for_each_line(std::string_view text, std::string_view comment_chars, F&& f) {
    while (!text.empty()) {
        auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        auto hash = line.find_first_of(comment_chars);
        if (hash != std::string_view::npos) {
            line = line.substr(0, hash);
        }
        f(line);
        if (nl == std::string_view::npos) {
            break;
        }
        text.remove_prefix(nl + 1);
    }
}

bool is_ip_literal(std::string_view s) {
    std::string str(s);
    auto pct = str.find('%');  // fe80::1%eth0: the zone is not part of the address
    if (pct != std::string::npos) {
        str.resize(pct);
    }
    unsigned char buf[16];
    return inet_pton(AF_INET, str.c_str(), buf) == 1 || inet_pton(AF_INET6, str.c_str(), buf) == 1;
}

int option_value(std::string_view opt, std::string_view key, int fallback, int max) {
    if (opt.size() <= key.size() || opt.substr(0, key.size()) != key) {
        return fallback;
    }
    int v = 0;
    auto digits = opt.substr(key.size());
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (ec != std::errc() || ptr != digits.data() + digits.size() || v < 0) {
        return fallback;
    }
    return std::min(v, max);
}

}  // namespace

ResolvConf parse_resolv_conf(std::string_view text) {
    ResolvConf conf;
    for_each_line(text, "#;", [&](std::string_view line) {
        auto w = split_words(line);
        if (w.empty()) {
            return;
        }
        if (w[0] == "nameserver" && w.size() >= 2) {
            if (conf.nameservers.size() < 3 && is_ip_literal(w[1])) {
                conf.nameservers.emplace_back(w[1]);
            }
        } else if (w[0] == "search") {
            conf.search.clear();  // the last search/domain line wins, as in glibc
            for (size_t i = 1; i < w.size(); ++i) {
                conf.search.emplace_back(w[i]);
            }
        } else if (w[0] == "domain" && w.size() >= 2) {
            conf.search.assign(1, std::string(w[1]));
        } else if (w[0] == "options") {
            for (size_t i = 1; i < w.size(); ++i) {
                conf.ndots = option_value(w[i], "ndots:", conf.ndots, 15);
                conf.timeout_s = std::max(1, option_value(w[i], "timeout:", conf.timeout_s, 30));
                conf.attempts = std::max(1, option_value(w[i], "attempts:", conf.attempts, 5));
                if (w[i] == "rotate") {
                    conf.rotate = true;
                }
            }
        }
    });
    return conf;
}

std::vector<HostsEntry> parse_hosts(std::string_view text) {
    std::vector<HostsEntry> entries;
    for_each_line(text, "#", [&](std::string_view line) {
        auto w = split_words(line);
        if (w.size() < 2 || !is_ip_literal(w[0])) {
            return;
        }
        HostsEntry e;
        e.address = std::string(w[0]);
        for (size_t i = 1; i < w.size(); ++i) {
            e.names.emplace_back(w[i]);
        }
        entries.push_back(std::move(e));
    });
    return entries;
}

}  // namespace mirrord::agent
