// file_service.cpp: file requests against the target's root (see file_service.hpp).
#include "file_service.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace mirrord::agent {

namespace {

bool ok_path(const std::string& p) { return !p.empty() && p.size() <= 4096 && p.find('\0') == std::string::npos; }

int64_t to_ns(const timespec& ts) { return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec; }

// getdents64 record layout (not exported by glibc headers).
struct LinuxDirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

}  // namespace

void set_error(v1::AgentMessage& reply, int err, const std::string& what) {
    auto* e = reply.mutable_error();
    e->set_code(err);
    e->set_message(what + ": " + std::strerror(err));
}

void fill_stat(const struct stat& st, v1::FileStat& out) {
    out.set_dev(st.st_dev);
    out.set_ino(st.st_ino);
    out.set_mode(st.st_mode);
    out.set_nlink(st.st_nlink);
    out.set_uid(st.st_uid);
    out.set_gid(st.st_gid);
    out.set_rdev(st.st_rdev);
    out.set_size(st.st_size);
    out.set_blksize(st.st_blksize);
    out.set_blocks(st.st_blocks);
    out.set_atime_ns(to_ns(st.st_atim));
    out.set_mtime_ns(to_ns(st.st_mtim));
    out.set_ctime_ns(to_ns(st.st_ctim));
}

uint64_t FileService::add(UniqueFd fd) {
    uint64_t id = next_id_++;
    files_.emplace(id, std::move(fd));
    return id;
}

int FileService::fd_of(uint64_t id) const {
    auto it = files_.find(id);
    return it == files_.end() ? -EBADF : it->second.get();
}

bool FileService::handle(const v1::ClientMessage& m, v1::AgentMessage& reply) {
    using C = v1::ClientMessage;
    switch (m.body_case()) {
        case C::kFileOpen: open(m.file_open(), reply); return true;
        case C::kFileRead: read(m.file_read(), reply); return true;
        case C::kFileReadAt: read_at(m.file_read_at(), reply); return true;
        case C::kFileReadWhole: read_whole(m.file_read_whole(), reply); return true;
        case C::kFileWrite: write(m.file_write().fd(), m.file_write().data(), false, 0, reply); return true;
        case C::kFileWriteAt:
            write(m.file_write_at().fd(), m.file_write_at().data(), true, m.file_write_at().offset(), reply);
            return true;
        case C::kFileSeek: seek(m.file_seek(), reply); return true;
        case C::kFileStat: stat(m.file_stat(), reply); return true;
        case C::kFsStat: fs_stat(m.fs_stat(), reply); return true;
        case C::kFileAccess: {
            const auto& r = m.file_access();
            int rc = ok_path(r.path()) ? fs_.access(r.path(), r.mode()) : -ENOENT;
            rc < 0 ? set_error(reply, -rc, "access " + r.path()) : (void)reply.mutable_ok();
            return true;
        }
        case C::kDirOpen: dir_open(m.dir_open(), reply); return true;
        case C::kDirRead: dir_read(m.dir_read(), reply); return true;
        case C::kDirClose:
        case C::kFileClose: {
            uint64_t id = m.body_case() == C::kDirClose ? m.dir_close().dir_id() : m.file_close().fd();
            files_.erase(id) ? (void)reply.mutable_ok() : set_error(reply, EBADF, "close " + std::to_string(id));
            return true;
        }
        case C::kReadLink: {
            std::string target;
            int rc = ok_path(m.read_link().path()) ? fs_.readlink(m.read_link().path(), target) : -ENOENT;
            rc < 0 ? set_error(reply, -rc, "readlink " + m.read_link().path())
                   : reply.mutable_link_target()->set_target(target);
            return true;
        }
        case C::kMakeDir: {
            int rc = ok_path(m.make_dir().path()) ? fs_.mkdir(m.make_dir().path(), m.make_dir().mode()) : -ENOENT;
            rc < 0 ? set_error(reply, -rc, "mkdir " + m.make_dir().path()) : (void)reply.mutable_ok();
            return true;
        }
        case C::kRemoveDir: {
            int rc = ok_path(m.remove_dir().path()) ? fs_.rmdir(m.remove_dir().path()) : -ENOENT;
            rc < 0 ? set_error(reply, -rc, "rmdir " + m.remove_dir().path()) : (void)reply.mutable_ok();
            return true;
        }
        case C::kUnlink: {
            int rc = ok_path(m.unlink().path()) ? fs_.unlink(m.unlink().path()) : -ENOENT;
            rc < 0 ? set_error(reply, -rc, "unlink " + m.unlink().path()) : (void)reply.mutable_ok();
            return true;
        }
        case C::kRename: {
            const auto& r = m.rename();
            int rc = ok_path(r.from()) && ok_path(r.to()) ? fs_.rename(r.from(), r.to()) : -ENOENT;
            rc < 0 ? set_error(reply, -rc, "rename " + r.from() + " -> " + r.to()) : (void)reply.mutable_ok();
            return true;
        }
        case C::kFtruncate: {
            int fd = fd_of(m.ftruncate().fd());
            if (fd < 0) {
                set_error(reply, EBADF, "ftruncate");
            } else if (m.ftruncate().length() < 0) {
                set_error(reply, EINVAL, "ftruncate");
            } else if (::ftruncate(fd, m.ftruncate().length()) != 0) {
                set_error(reply, errno, "ftruncate");
            } else {
                reply.mutable_ok();
            }
            return true;
        }
        default:
            return false;
    }
}

void FileService::open(const v1::FileOpen& req, v1::AgentMessage& reply) {
    if (!ok_path(req.path())) {
        set_error(reply, ENOENT, "open");
        return;
    }
    if (files_.size() >= kMaxOpenFiles) {
        set_error(reply, EMFILE, "open " + req.path() + " (per-client limit of open files)");
        return;
    }
    int flags = req.flags() & ~O_CLOEXEC;
    int fd;
    if (req.dir_fd() != 0) {
        int dirfd = fd_of(req.dir_fd());
        if (dirfd < 0) {
            set_error(reply, EBADF, "openat " + req.path());
            return;
        }
        fd = fs_.open_at(dirfd, req.path(), flags, req.mode());
    } else {
        fd = fs_.open(req.path(), flags, req.mode());
    }
    if (fd < 0) {
        set_error(reply, -fd, "open " + req.path());
        return;
    }
    UniqueFd owned(fd);
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        set_error(reply, errno, "fstat " + req.path());
        return;
    }
    auto* opened = reply.mutable_file_opened();
    fill_stat(st, *opened->mutable_stat());
    opened->set_fd(add(std::move(owned)));
}

void FileService::read(const v1::FileRead& req, v1::AgentMessage& reply) {
    int fd = fd_of(req.fd());
    if (fd < 0) {
        set_error(reply, EBADF, "read");
        return;
    }
    std::string buf(std::min(req.size(), kMaxReadChunk), '\0');
    ssize_t n;
    do {
        n = ::read(fd, buf.data(), buf.size());
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        set_error(reply, errno, "read");
        return;
    }
    buf.resize(static_cast<size_t>(n));
    reply.mutable_file_data()->set_data(std::move(buf));
}

void FileService::read_at(const v1::FileReadAt& req, v1::AgentMessage& reply) {
    int fd = fd_of(req.fd());
    if (fd < 0) {
        set_error(reply, EBADF, "pread");
        return;
    }
    if (req.offset() > static_cast<uint64_t>(INT64_MAX)) {
        set_error(reply, EINVAL, "pread");
        return;
    }
    std::string buf(std::min(req.size(), kMaxReadChunk), '\0');
    ssize_t n;
    do {
        n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(req.offset()));
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        set_error(reply, errno, "pread");
        return;
    }
    buf.resize(static_cast<size_t>(n));
    reply.mutable_file_data()->set_data(std::move(buf));
}

void FileService::read_whole(const v1::FileReadWhole& req, v1::AgentMessage& reply) {
    if (!ok_path(req.path())) {
        set_error(reply, ENOENT, "open");
        return;
    }
    UniqueFd fd(fs_.open(req.path(), O_RDONLY));
    if (!fd) {
        set_error(reply, -fd.get(), "open " + req.path());
        return;
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        set_error(reply, errno, "fstat " + req.path());
        return;
    }
    auto* whole = reply.mutable_file_whole();
    fill_stat(st, *whole->mutable_stat());
    uint64_t cap = std::min<uint64_t>(req.max_size(), kMaxWholeFile);
    if (S_ISDIR(st.st_mode)) {
        reply.clear_file_whole();
        set_error(reply, EISDIR, "read " + req.path());
        return;
    }
    if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) > cap) {
        whole->set_too_large(true);  // not a plain file, or over the cap: use remote-fd reads
        return;
    }
    std::string data;
    data.resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    for (;;) {
        if (got == data.size()) {
            // The file may have grown since fstat: read on until EOF, within the cap.
            if (data.size() >= cap) {
                char probe;
                ssize_t extra = ::read(fd.get(), &probe, 1);
                if (extra > 0) {
                    whole->clear_data();
                    whole->set_too_large(true);
                    return;
                }
                break;
            }
            data.resize(std::min<uint64_t>(cap, data.size() + 65536));
        }
        ssize_t n = ::read(fd.get(), data.data() + got, data.size() - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            reply.clear_file_whole();
            set_error(reply, errno, "read " + req.path());
            return;
        }
        if (n == 0) {
            break;
        }
        got += static_cast<size_t>(n);
    }
    data.resize(got);
    whole->set_data(std::move(data));
}

void FileService::write(uint64_t id, const std::string& data, bool positional, uint64_t offset,
                        v1::AgentMessage& reply) {
    int fd = fd_of(id);
    if (fd < 0) {
        set_error(reply, EBADF, "write");
        return;
    }
    if (positional && offset > static_cast<uint64_t>(INT64_MAX)) {
        set_error(reply, EINVAL, "pwrite");
        return;
    }
    ssize_t n;
    do {
        n = positional ? ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset))
                       : ::write(fd, data.data(), data.size());
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        set_error(reply, errno, positional ? "pwrite" : "write");
        return;
    }
    reply.mutable_file_written()->set_written(static_cast<uint64_t>(n));
}

void FileService::seek(const v1::FileSeek& req, v1::AgentMessage& reply) {
    int fd = fd_of(req.fd());
    if (fd < 0) {
        set_error(reply, EBADF, "lseek");
        return;
    }
    off_t pos = ::lseek(fd, req.offset(), req.whence());
    if (pos < 0) {
        set_error(reply, errno, "lseek");
        return;
    }
    reply.mutable_file_offset()->set_offset(static_cast<uint64_t>(pos));
}

void FileService::stat(const v1::FileStatRequest& req, v1::AgentMessage& reply) {
    struct stat st {};
    int rc;
    if (!req.path().empty()) {
        if (!ok_path(req.path())) {
            set_error(reply, ENOENT, "stat");
            return;
        }
        rc = req.follow_symlinks() ? fs_.stat(req.path(), st) : fs_.lstat(req.path(), st);
    } else {
        int fd = fd_of(req.fd());
        rc = fd < 0 ? -EBADF : (::fstat(fd, &st) == 0 ? 0 : -errno);
    }
    if (rc < 0) {
        set_error(reply, -rc, "stat " + req.path());
        return;
    }
    fill_stat(st, *reply.mutable_file_stat());
}

void FileService::fs_stat(const v1::FsStatRequest& req, v1::AgentMessage& reply) {
    struct statfs sf {};
    int rc;
    if (!req.path().empty()) {
        rc = ok_path(req.path()) ? fs_.statfs(req.path(), sf) : -ENOENT;
    } else {
        int fd = fd_of(req.fd());
        rc = fd < 0 ? -EBADF : (::fstatfs(fd, &sf) == 0 ? 0 : -errno);
    }
    if (rc < 0) {
        set_error(reply, -rc, "statfs " + req.path());
        return;
    }
    auto* o = reply.mutable_fs_stat();
    o->set_type(sf.f_type);
    o->set_bsize(sf.f_bsize);
    o->set_blocks(sf.f_blocks);
    o->set_bfree(sf.f_bfree);
    o->set_bavail(sf.f_bavail);
    o->set_files(sf.f_files);
    o->set_ffree(sf.f_ffree);
    uint64_t fsid;
    std::memcpy(&fsid, &sf.f_fsid, sizeof fsid);
    o->set_fsid(fsid);
    o->set_namelen(sf.f_namelen);
    o->set_frsize(sf.f_frsize);
    o->set_flags(sf.f_flags);
}

void FileService::dir_open(const v1::DirOpen& req, v1::AgentMessage& reply) {
    if (files_.size() >= kMaxOpenFiles) {
        set_error(reply, EMFILE, "opendir (per-client limit of open files)");
        return;
    }
    int fd;
    if (!req.path().empty()) {
        fd = ok_path(req.path()) ? fs_.open(req.path(), O_RDONLY | O_DIRECTORY) : -ENOENT;
    } else {
        int src = fd_of(req.fd());
        // fdopendir of an fd we hold: a fresh open of the same directory, so positions are its own
        fd = src < 0 ? -EBADF : fs_.open_at(src, ".", O_RDONLY | O_DIRECTORY);
    }
    if (fd < 0) {
        set_error(reply, -fd, "opendir " + req.path());
        return;
    }
    reply.mutable_dir_opened()->set_dir_id(add(UniqueFd(fd)));
}

void FileService::dir_read(const v1::DirRead& req, v1::AgentMessage& reply) {
    int fd = fd_of(req.dir_id());
    if (fd < 0) {
        set_error(reply, EBADF, "readdir");
        return;
    }
    uint32_t want = std::clamp<uint32_t>(req.max_entries(), 1, kMaxDirBatch);
    auto* out = reply.mutable_dir_entries();
    alignas(8) char buf[32768];
    while (static_cast<uint32_t>(out->entries_size()) < want) {
        long n = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n < 0) {
            reply.clear_dir_entries();
            set_error(reply, errno, "readdir");
            return;
        }
        if (n == 0) {
            out->set_eof(true);
            return;
        }
        for (long off = 0; off < n;) {
            auto* d = reinterpret_cast<LinuxDirent64*>(buf + off);
            auto* e = out->add_entries();
            e->set_name(d->d_name);
            e->set_inode(d->d_ino);
            e->set_type(d->d_type);
            e->set_offset(d->d_off);
            off += d->d_reclen;
            if (static_cast<uint32_t>(out->entries_size()) == want && off < n) {
                // The kernel gave more than asked: rewind to just after the last one we return.
                ::lseek(fd, d->d_off, SEEK_SET);
                return;
            }
        }
    }
}

}  // namespace mirrord::agent
