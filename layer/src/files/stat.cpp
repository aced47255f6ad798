// stat.cpp: the target's FileStat (times in ns) written into struct stat / struct statx.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstring>

#include "files/files.hpp"

namespace mirrord::layer::files {

namespace {
timespec ts(std::int64_t ns) {
    timespec t{};
    t.tv_sec = static_cast<time_t>(ns / 1000000000);
    t.tv_nsec = static_cast<long>(ns % 1000000000);
    if (t.tv_nsec < 0) {
        t.tv_nsec += 1000000000;
        t.tv_sec -= 1;
    }
    return t;
}
}  // namespace

void fill_stat(const mirrord_v1_FileStat& in, struct stat& out) {
    std::memset(&out, 0, sizeof out);
    out.st_dev = static_cast<dev_t>(in.dev);
    out.st_ino = static_cast<ino_t>(in.ino);
    out.st_mode = static_cast<mode_t>(in.mode);
    out.st_nlink = static_cast<nlink_t>(in.nlink);
    out.st_uid = in.uid;
    out.st_gid = in.gid;
    out.st_rdev = static_cast<dev_t>(in.rdev);
    out.st_size = static_cast<off_t>(in.size);
    out.st_blksize = static_cast<blksize_t>(in.blksize != 0 ? in.blksize : 4096);
    out.st_blocks = static_cast<blkcnt_t>(in.blocks);
    out.st_atim = ts(in.atime_ns);
    out.st_mtim = ts(in.mtime_ns);
    out.st_ctim = ts(in.ctime_ns);
}

void fill_statx(const mirrord_v1_FileStat& in, struct statx& out) {
    std::memset(&out, 0, sizeof out);
    out.stx_mask = STATX_BASIC_STATS;
    out.stx_blksize = static_cast<std::uint32_t>(in.blksize != 0 ? in.blksize : 4096);
    out.stx_nlink = static_cast<std::uint32_t>(in.nlink);
    out.stx_uid = in.uid;
    out.stx_gid = in.gid;
    out.stx_mode = static_cast<std::uint16_t>(in.mode);
    out.stx_ino = in.ino;
    out.stx_size = static_cast<std::uint64_t>(in.size);
    out.stx_blocks = static_cast<std::uint64_t>(in.blocks);
    auto sx = [](std::int64_t ns) {
        timespec t = ts(ns);
        struct statx_timestamp r {};
        r.tv_sec = t.tv_sec;
        r.tv_nsec = static_cast<std::uint32_t>(t.tv_nsec);
        return r;
    };
    out.stx_atime = sx(in.atime_ns);
    out.stx_mtime = sx(in.mtime_ns);
    out.stx_ctime = sx(in.ctime_ns);
    out.stx_btime = sx(in.ctime_ns);
    out.stx_rdev_major = major(static_cast<dev_t>(in.rdev));
    out.stx_rdev_minor = minor(static_cast<dev_t>(in.rdev));
    out.stx_dev_major = major(static_cast<dev_t>(in.dev));
    out.stx_dev_minor = minor(static_cast<dev_t>(in.dev));
}

}  // namespace mirrord::layer::files
