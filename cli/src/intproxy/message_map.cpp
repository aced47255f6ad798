// message_map.cpp: LayerMessage -> ClientMessage and AgentMessage -> ProxyMessage body copies
// (see message_map.hpp).
#include "intproxy/message_map.hpp"

namespace mirrord::cli::intproxy {

#define MIRRORD_COPY_CASE(FROM, CASE, field) \
    case FROM::CASE:                          \
        out.mutable_##field()->Swap(in.mutable_##field()); \
        return true;

bool to_agent_request(v1::LayerMessage& in, v1::ClientMessage& out) {
    using L = v1::LayerMessage;
    switch (in.body_case()) {
        MIRRORD_COPY_CASE(L, kGetEnv, get_env)
        MIRRORD_COPY_CASE(L, kFileOpen, file_open)
        MIRRORD_COPY_CASE(L, kFileRead, file_read)
        MIRRORD_COPY_CASE(L, kFileReadAt, file_read_at)
        MIRRORD_COPY_CASE(L, kFileReadWhole, file_read_whole)
        MIRRORD_COPY_CASE(L, kFileWrite, file_write)
        MIRRORD_COPY_CASE(L, kFileWriteAt, file_write_at)
        MIRRORD_COPY_CASE(L, kFileSeek, file_seek)
        MIRRORD_COPY_CASE(L, kFileStat, file_stat)
        MIRRORD_COPY_CASE(L, kFsStat, fs_stat)
        MIRRORD_COPY_CASE(L, kFileAccess, file_access)
        MIRRORD_COPY_CASE(L, kDirOpen, dir_open)
        MIRRORD_COPY_CASE(L, kDirRead, dir_read)
        MIRRORD_COPY_CASE(L, kDirClose, dir_close)
        MIRRORD_COPY_CASE(L, kReadLink, read_link)
        MIRRORD_COPY_CASE(L, kMakeDir, make_dir)
        MIRRORD_COPY_CASE(L, kRemoveDir, remove_dir)
        MIRRORD_COPY_CASE(L, kUnlink, unlink)
        MIRRORD_COPY_CASE(L, kRename, rename)
        MIRRORD_COPY_CASE(L, kFtruncate, ftruncate)
        MIRRORD_COPY_CASE(L, kFileClose, file_close)
        MIRRORD_COPY_CASE(L, kGetAddrInfo, get_addr_info)
        default:
            return false;
    }
}

bool to_layer_reply(v1::AgentMessage& in, v1::ProxyMessage& out) {
    using A = v1::AgentMessage;
    switch (in.body_case()) {
        MIRRORD_COPY_CASE(A, kError, error)
        MIRRORD_COPY_CASE(A, kOk, ok)
        MIRRORD_COPY_CASE(A, kEnvVars, env_vars)
        MIRRORD_COPY_CASE(A, kFileOpened, file_opened)
        MIRRORD_COPY_CASE(A, kFileData, file_data)
        MIRRORD_COPY_CASE(A, kFileWhole, file_whole)
        MIRRORD_COPY_CASE(A, kFileWritten, file_written)
        MIRRORD_COPY_CASE(A, kFileOffset, file_offset)
        MIRRORD_COPY_CASE(A, kFileStat, file_stat)
        MIRRORD_COPY_CASE(A, kFsStat, fs_stat)
        MIRRORD_COPY_CASE(A, kDirOpened, dir_opened)
        MIRRORD_COPY_CASE(A, kDirEntries, dir_entries)
        MIRRORD_COPY_CASE(A, kLinkTarget, link_target)
        MIRRORD_COPY_CASE(A, kAddrInfo, addr_info)
        MIRRORD_COPY_CASE(A, kSubscribed, subscribed)
        default:
            return false;
    }
}

#undef MIRRORD_COPY_CASE

}  // namespace mirrord::cli::intproxy
