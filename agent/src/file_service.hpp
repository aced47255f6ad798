// file_service.hpp: one client's remote files and directories. Every FileOpen/Dir*/stat/...
// request is answered synchronously (local filesystem calls through TargetFs, which confines
// them to the target's root) with the reply message or an Error carrying the errno the call got.
// Remote fds are small per-client numbers mapped to real fds; all are closed with the session.
#pragma once

#include <cstdint>
#include <map>

#include "mirrord.pb.h"
#include "mirrord/common/unique_fd.hpp"
#include "target_fs.hpp"

namespace mirrord::agent {

class FileService {
public:
    static constexpr size_t kMaxOpenFiles = 1024;          // per client, files + directories
    static constexpr uint32_t kMaxReadChunk = 1u << 20;      // a read returns at most 1 MiB
    static constexpr uint64_t kMaxWholeFile = 15u << 20;     // read_whole cap (under the frame cap)
    static constexpr uint32_t kMaxDirBatch = 512;

    explicit FileService(const TargetFs& fs) : fs_(fs) {}

    // True if the message is a file request this service answers; `reply` then holds the answer
    // body (an Error on failure). FileClose/DirClose produce Ok.
    bool handle(const v1::ClientMessage& request, v1::AgentMessage& reply);

    size_t open_count() const { return files_.size(); }

private:
    uint64_t add(UniqueFd fd);
    int fd_of(uint64_t id) const;  // -EBADF if unknown

    void open(const v1::FileOpen& req, v1::AgentMessage& reply);
    void read(const v1::FileRead& req, v1::AgentMessage& reply);
    void read_at(const v1::FileReadAt& req, v1::AgentMessage& reply);
    void read_whole(const v1::FileReadWhole& req, v1::AgentMessage& reply);
    void write(uint64_t id, const std::string& data, bool positional, uint64_t offset, v1::AgentMessage& reply);
    void seek(const v1::FileSeek& req, v1::AgentMessage& reply);
    void stat(const v1::FileStatRequest& req, v1::AgentMessage& reply);
    void fs_stat(const v1::FsStatRequest& req, v1::AgentMessage& reply);
    void dir_open(const v1::DirOpen& req, v1::AgentMessage& reply);
    void dir_read(const v1::DirRead& req, v1::AgentMessage& reply);

    const TargetFs& fs_;
    std::map<uint64_t, UniqueFd> files_;  // files and directories share the id space
    uint64_t next_id_ = 1;
};

// Helpers shared with other handlers.
void set_error(v1::AgentMessage& reply, int err, const std::string& what);
void fill_stat(const struct stat& st, v1::FileStat& out);

}  // namespace mirrord::agent
