// gethostname.cpp: gethostname() reports the target's host name (feature.hostname, default on):
// the pod's /etc/hostname, fetched once with FileReadWhole through the intproxy (the agent
// confines the path to the target's root), trailing whitespace stripped, cached for the
// process. If it cannot be fetched, the real gethostname answers. A buffer too small for the
// name fails with ENAMETOOLONG as glibc's does.
#include <errno.h>
#include <pb_decode.h>
#include <pthread.h>
#include <unistd.h>

#include <cstring>

#include "core/core.hpp"

using namespace mirrord::layer;

namespace {

constexpr size_t kMax = 256;

struct Cache {
    char name[kMax + 1] = {};
    bool ok = false;
};
Cache g_cache;
pthread_once_t g_once = PTHREAD_ONCE_INIT;

bool route_body(pb_istream_t*, const pb_field_t* field, void** arg) {
    if (field->tag == mirrord_v1_ProxyMessage_file_whole_tag) {
        auto* w = static_cast<mirrord_v1_FileWhole*>(field->pData);
        w->data.funcs.decode = &decode_bytes_into;
        w->data.arg = *arg;
    }
    return true;
}

void fetch() {
    mirrord_v1_LayerMessage msg = mirrord_v1_LayerMessage_init_zero;
    mirrord_v1_ProxyMessage reply = mirrord_v1_ProxyMessage_init_zero;
    msg.which_body = mirrord_v1_LayerMessage_file_read_whole_tag;
    std::strcpy(msg.body.file_read_whole.path, "/etc/hostname");
    msg.body.file_read_whole.max_size = kMax;
    BytesSink sink{g_cache.name, kMax};
    reply.cb_body.funcs.decode = &route_body;
    reply.cb_body.arg = &sink;
    if (request(msg, reply) != 0 || reply.which_body != mirrord_v1_ProxyMessage_file_whole_tag ||
        reply.body.file_whole.too_large) {
        return;
    }
    size_t n = sink.got;
    g_cache.name[n] = '\0';
    size_t first_nl = std::strcspn(g_cache.name, "\n");
    n = first_nl;
    while (n > 0 && (g_cache.name[n - 1] == ' ' || g_cache.name[n - 1] == '\t' || g_cache.name[n - 1] == '\r')) --n;
    g_cache.name[n] = '\0';
    g_cache.ok = n > 0;
}

}  // namespace

extern "C" int gethostname(char* name, size_t len) {
    HookScope scope;
    if (!scope.active() || !settings().hostname) return REAL(gethostname)(name, len);
    pthread_once(&g_once, fetch);
    if (!g_cache.ok) return REAL(gethostname)(name, len);
    size_t n = std::strlen(g_cache.name);
    if (len < n + 1) {
        if (len > 0) std::memcpy(name, g_cache.name, len);
        errno = ENAMETOOLONG;
        return -1;
    }
    std::memcpy(name, g_cache.name, n + 1);
    return 0;
}
