// socket_table.cpp: the managed-socket table (see socket_table.hpp) and its execve
// serialisation: "fd,ino,domain,type,protocol,state,flags,port,connid,owner_pid,requested,actual,
// remote,local,connect_to" entries joined by ';', addresses as hex of their sockaddr bytes ('-' = none).
// The new image keeps an entry only if the fd is still a socket with the same inode.
#include "net/socket_table.hpp"

#include <pthread.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "core/core.hpp"

namespace mirrord::layer::net {

namespace {

pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
std::unordered_map<int, SocketPtr>* g_map = nullptr;  // never freed (hooks run during exit)

void atfork_prepare() { pthread_mutex_lock(&g_lock); }
void atfork_parent() { pthread_mutex_unlock(&g_lock); }
void atfork_child() {
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    std::memcpy(&g_lock, &fresh, sizeof fresh);
}

__attribute__((constructor)) void register_atfork() {
    ::pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

std::unordered_map<int, SocketPtr>& map_locked() {
    if (g_map == nullptr) {
        g_map = new std::unordered_map<int, SocketPtr>();
    }
    return *g_map;
}

struct Lock {
    Lock() { pthread_mutex_lock(&g_lock); }
    ~Lock() { pthread_mutex_unlock(&g_lock); }
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;
};

std::uint64_t inode_of_socket(int fd) {
    struct stat st {};
    if (REAL(fstat)(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return 0;
    return static_cast<std::uint64_t>(st.st_ino);
}

void put_addr(std::string& out, const Addr& a) {
    if (a.empty()) {
        out += '-';
        return;
    }
    static const char hex[] = "0123456789abcdef";
    const auto* p = reinterpret_cast<const unsigned char*>(&a.ss);
    for (socklen_t i = 0; i < a.len; ++i) {
        out += hex[p[i] >> 4];
        out += hex[p[i] & 15];
    }
}

bool get_addr(const std::string& s, Addr& a) {
    a = Addr{};
    if (s == "-") return true;
    if (s.size() % 2 != 0 || s.size() / 2 > sizeof(sockaddr_storage)) return false;
    auto* p = reinterpret_cast<unsigned char*>(&a.ss);
    for (size_t i = 0; i < s.size() / 2; ++i) {
        char byte[3] = {s[2 * i], s[2 * i + 1], 0};
        char* end = nullptr;
        unsigned long v = std::strtoul(byte, &end, 16);
        if (end != byte + 2) return false;
        p[i] = static_cast<unsigned char>(v);
    }
    a.len = static_cast<socklen_t>(s.size() / 2);
    return true;
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    size_t start = 0;
    for (;;) {
        size_t pos = s.find(sep, start);
        if (pos == std::string::npos) {
            out.push_back(s.substr(start));
            return out;
        }
        out.push_back(s.substr(start, pos - start));
        start = pos + 1;
    }
}

}  // namespace

void table_insert(int fd, SocketPtr sock) noexcept {
    try {
        Lock l;
        auto& slot = map_locked()[fd];
        if (slot) --slot->fd_refs;  // a stale entry for a number the kernel reused
        slot = std::move(sock);
        ++slot->fd_refs;
    } catch (...) {
        return;
    }
    set_fd_kind(fd, FdKind::socket);
}

SocketPtr table_remove(int fd, bool* last) noexcept {
    SocketPtr out;
    {
        Lock l;
        auto& m = map_locked();
        auto it = m.find(fd);
        if (it != m.end()) {
            out = std::move(it->second);
            m.erase(it);
            --out->fd_refs;
        }
        if (last != nullptr) *last = out != nullptr && out->fd_refs <= 0;
    }
    if (fd_kind(fd) == FdKind::socket) set_fd_kind(fd, FdKind::none);
    return out;
}

SocketPtr table_get(int fd) noexcept {
    Lock l;
    auto& m = map_locked();
    auto it = m.find(fd);
    return it == m.end() ? nullptr : it->second;
}

void table_dup(int oldfd, int newfd) noexcept {
    if (oldfd == newfd) return;
    bool ok = false;
    try {
        Lock l;
        auto& m = map_locked();
        auto old = m.find(newfd);
        if (old != m.end()) {
            --old->second->fd_refs;
            m.erase(old);
        }
        auto it = m.find(oldfd);
        if (it != m.end()) {
            SocketPtr shared = it->second;
            ++shared->fd_refs;
            m[newfd] = std::move(shared);
            ok = true;
        }
    } catch (...) {
    }
    set_fd_kind(newfd, ok ? FdKind::socket : FdKind::none);
}

void table_locked(const std::function<void()>& fn) noexcept {
    Lock l;
    try {
        fn();
    } catch (...) {
    }
}

void table_each_locked(const std::function<bool(int, Socket&)>& fn) noexcept {
    Lock l;
    try {
        for (auto& [fd, s] : map_locked()) {
            if (fn(fd, *s)) break;
        }
    } catch (...) {
    }
}

std::string table_serialise() noexcept {
    try {
        std::vector<std::pair<int, SocketPtr>> all;
        {
            Lock l;
            for (auto& [fd, s] : map_locked()) all.emplace_back(fd, s);
        }
        std::string out;
        for (auto& [fd, sp] : all) {
            std::uint64_t ino = inode_of_socket(fd);
            if (ino == 0) continue;
            Socket s;
            {
                Lock l;
                s = *sp;
            }
            char head[192];
            unsigned flags = (s.bind_rebound ? 1u : 0u) | (s.subscribed ? 2u : 0u) | (s.via_layer ? 4u : 0u);
            std::snprintf(head, sizeof head, "%d,%llu,%d,%d,%d,%d,%u,%u,%llu,%d,", fd,
                          static_cast<unsigned long long>(ino), s.domain, s.type, s.protocol,
                          static_cast<int>(s.state), flags, s.subscribed_port,
                          static_cast<unsigned long long>(s.connection_id), s.owner_pid);
            if (!out.empty()) out += ';';
            out += head;
            put_addr(out, s.requested);
            out += ',';
            put_addr(out, s.actual);
            out += ',';
            put_addr(out, s.remote);
            out += ',';
            put_addr(out, s.in_cluster_local);
            out += ',';
            put_addr(out, s.connect_to);
        }
        return out;
    } catch (...) {
        return {};
    }
}

void table_restore(const std::string& text) noexcept {
    try {
        if (text.empty()) return;
        for (const auto& entry : split(text, ';')) {
            auto f = split(entry, ',');
            if (f.size() != 15) continue;
            int fd = std::atoi(f[0].c_str());
            unsigned long long ino = std::strtoull(f[1].c_str(), nullptr, 10);
            if (fd < 0 || ino == 0 || inode_of_socket(fd) != ino) continue;
            auto s = std::make_shared<Socket>();
            s->domain = std::atoi(f[2].c_str());
            s->type = std::atoi(f[3].c_str());
            s->protocol = std::atoi(f[4].c_str());
            int st = std::atoi(f[5].c_str());
            if (st < 0 || st > static_cast<int>(SockState::connected)) continue;
            s->state = static_cast<SockState>(st);
            unsigned flags = static_cast<unsigned>(std::atoi(f[6].c_str()));
            s->bind_rebound = (flags & 1u) != 0;
            s->subscribed = (flags & 2u) != 0;
            s->via_layer = (flags & 4u) != 0;
            s->subscribed_port = static_cast<std::uint16_t>(std::atoi(f[7].c_str()));
            s->connection_id = std::strtoull(f[8].c_str(), nullptr, 10);
            s->owner_pid = std::atoi(f[9].c_str());
            if (!get_addr(f[10], s->requested) || !get_addr(f[11], s->actual) || !get_addr(f[12], s->remote) ||
                !get_addr(f[13], s->in_cluster_local) || !get_addr(f[14], s->connect_to)) {
                continue;
            }
            table_insert(fd, std::move(s));
        }
    } catch (...) {
    }
}

}  // namespace mirrord::layer::net
