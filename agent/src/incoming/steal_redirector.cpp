// steal_redirector.cpp: StealRedirector: load the steal_bpf skeleton, attach its sk_lookup
// program to a netns with a BPF link, and keep the port -> slot and slot -> listener maps.
#include "incoming/steal_redirector.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "steal.skel.h"

namespace mirrord::agent {

namespace {

[[noreturn]] void fail(const std::string& what, int err) {
    throw StealError("steal redirector: " + what + ": " + std::strerror(err < 0 ? -err : err));
}

}  // namespace

StealRedirector::StealRedirector(int netns_fd) {
    skel_ = steal_bpf__open();
    if (!skel_) fail("open BPF object", errno);
    // The C++ limits are the source of truth (steal.bpf.c's defaults are the same numbers).
    int rc = bpf_map__set_max_entries(skel_->maps.steal_ports, kMaxPorts);
    if (rc == 0) rc = bpf_map__set_max_entries(skel_->maps.steal_socks, kMaxPorts);
    if (rc == 0) rc = bpf_map__set_max_entries(skel_->maps.steal_bypass, kMaxBypass);
    if (rc != 0) {
        steal_bpf__destroy(skel_);
        fail("size BPF maps", rc);
    }
    if (rc = steal_bpf__load(skel_); rc != 0) {
        steal_bpf__destroy(skel_);
        fail("load sk_lookup program", rc);
    }
    link_ = bpf_program__attach_netns(skel_->progs.steal_lookup, netns_fd);
    if (!link_) {
        int err = errno;
        steal_bpf__destroy(skel_);
        fail("sk_lookup attach to netns", err);
    }
    bpf_link_info info{};
    std::uint32_t len = sizeof info;
    if (bpf_obj_get_info_by_fd(bpf_link__fd(link_), &info, &len) == 0) link_id_ = info.id;
}

StealRedirector::~StealRedirector() {
    bpf_link__destroy(link_);  // detaches: the netns's normal socket lookup is back at once
    steal_bpf__destroy(skel_);
}

std::uint32_t StealRedirector::free_slot() const {
    std::uint32_t slot = 0;
    for (;;) {  // slots_ is small (<= kMaxPorts): a linear search for the lowest unused slot
        bool used = false;
        for (const auto& [p, s] : slots_) used = used || s == slot;
        if (!used) return slot;
        ++slot;
    }
}

void StealRedirector::add_port(std::uint16_t port, int listener_fd) {
    const std::string what = "add port " + std::to_string(port);
    auto it = slots_.find(port);
    if (it == slots_.end() && slots_.size() >= kMaxPorts) {
        throw StealError("steal redirector: " + what + ": too many stolen ports (max " + std::to_string(kMaxPorts) + ")");
    }
    const std::uint32_t slot = it != slots_.end() ? it->second : free_slot();
    const std::uint64_t value = static_cast<std::uint32_t>(listener_fd);
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.steal_socks), &slot, &value, BPF_ANY) != 0) {
        fail(what + ": put listener fd " + std::to_string(listener_fd) + " in sockmap", errno);
    }
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.steal_ports), &port, &slot, BPF_ANY) != 0) {
        int err = errno;
        if (it == slots_.end()) bpf_map_delete_elem(bpf_map__fd(skel_->maps.steal_socks), &slot);
        fail(what + ": update port map", err);
    }
    slots_[port] = slot;
}

void StealRedirector::remove_port(std::uint16_t port) {
    auto it = slots_.find(port);
    if (it == slots_.end()) return;
    const std::uint32_t slot = it->second;
    const std::string what = "remove port " + std::to_string(port);
    // Port first, so no lookup finds the port with an empty slot in between (it would pass anyway).
    if (bpf_map_delete_elem(bpf_map__fd(skel_->maps.steal_ports), &port) != 0 && errno != ENOENT) {
        fail(what + ": delete from port map", errno);
    }
    slots_.erase(it);
    // An empty slot (the listener was closed and the kernel dropped it) gives EINVAL for a
    // SOCKMAP (ENOENT for other maps); the slot is always in range, so both mean "already gone".
    if (bpf_map_delete_elem(bpf_map__fd(skel_->maps.steal_socks), &slot) != 0 && errno != ENOENT && errno != EINVAL) {
        fail(what + ": delete listener from sockmap", errno);
    }
}

void StealRedirector::add_bypass(std::uint16_t source_port) {
    const std::uint8_t one = 1;
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.steal_bypass), &source_port, &one, BPF_ANY) != 0) {
        fail("add bypass for source port " + std::to_string(source_port), errno);
    }
}

void StealRedirector::remove_bypass(std::uint16_t source_port) {
    if (bpf_map_delete_elem(bpf_map__fd(skel_->maps.steal_bypass), &source_port) != 0 && errno != ENOENT) {
        fail("remove bypass for source port " + std::to_string(source_port), errno);
    }
}

}  // namespace mirrord::agent
