// mirror_capture_test.cpp: PacketCapture (agent/src/incoming/packet_capture.hpp) inside the harness
// pod's netns, with the classic and the eBPF engine: the capture delivers exactly the request bytes
// a client sent to the pod's http.server (curl from the peer netns and a raw socket client), a 10 MB
// upload to a sink in the pod arrives complete (SHA-256) without kernel drops, loopback traffic in
// the pod is seen once, ports not in the set are not seen, malformed frames are skipped, set_ports({}) stops the capture and
// closes every fd, and the pod's own server keeps answering. The capture lives on an io_context
// thread that joined the pod's netns with setns(CLONE_NEWNET) (setns affects only that thread).
// Needs root (the shared main exits 77 = Skipped otherwise).
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "incoming/packet_capture.hpp"
#include "mirrord/harness/cluster.hpp"

using mirrord::UniqueFd;
using mirrord::agent::PacketCapture;
using mirrord::agent::TcpReassembler;
namespace h = mirrord::harness;
using h::Ns;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::uint16_t kHttpPort = 80;
constexpr std::uint16_t kSinkPort = 9000;

struct FlowRecord {
    boost::asio::ip::tcp::endpoint client, server;
    std::string data;
    bool closed = false;
    TcpReassembler::CloseReason reason{};
    Clock::time_point opened_at{}, closed_at{};
};

std::size_t open_fd_count() {
    std::size_t count = 0;
    DIR* dir = ::opendir("/proc/self/fd");
    REQUIRE(dir != nullptr);
    while (dirent* entry = ::readdir(dir)) {
        if (entry->d_name[0] != '.') ++count;
    }
    ::closedir(dir);
    return count - 1;  // the directory's own fd
}

// A PacketCapture on its own io_context thread inside the pod's netns.
class CaptureThread {
public:
    CaptureThread(const h::Cluster& cluster, PacketCapture::Engine engine) : work_(io_.get_executor()) {
        UniqueFd netns(::open(cluster.netns_path(Ns::pod).c_str(), O_RDONLY | O_CLOEXEC));
        REQUIRE(netns.valid());
        std::promise<int> joined;
        auto joined_future = joined.get_future();
        thread_ = std::thread([this, fd = netns.get(), &joined] {
            joined.set_value(::setns(fd, CLONE_NEWNET) == 0 ? 0 : errno);
            io_.run();
        });
        int error = joined_future.get();
        if (error != 0) {
            stop();
            FAIL("setns into the pod's netns: " << std::strerror(error));
        }
        PacketCapture::Options options;
        options.engine = engine;
        call([&] {
            TcpReassembler::Handlers handlers;
            handlers.on_open = [this](std::uint64_t flow, const boost::asio::ip::tcp::endpoint& client,
                                      const boost::asio::ip::tcp::endpoint& server) {
                FlowRecord& record = flows_[flow];
                record.client = client;
                record.server = server;
                record.opened_at = Clock::now();
            };
            handlers.on_data = [this](std::uint64_t flow, std::string_view bytes) { flows_[flow].data.append(bytes); };
            handlers.on_close = [this](std::uint64_t flow, TcpReassembler::CloseReason reason) {
                flows_[flow].closed = true;
                flows_[flow].reason = reason;
                flows_[flow].closed_at = Clock::now();
            };
            capture_ = std::make_unique<PacketCapture>(io_, options, handlers);
        });
    }
    ~CaptureThread() { stop(); }

    // Runs f on the capture's thread and returns its result (exceptions are rethrown here).
    template <class F>
    auto call(F f) -> decltype(f()) {
        std::packaged_task<decltype(f())()> task(std::move(f));
        auto result = task.get_future();
        boost::asio::post(io_, [&task] { task(); });
        return result.get();
    }

    void set_ports(const std::set<std::uint16_t>& ports) {
        call([&] { capture_->set_ports(ports); });
    }
    PacketCapture::Stats stats() {
        return call([&] { return capture_->stats(); });
    }
    PacketCapture::Engine engine() {
        return call([&] { return capture_->engine(); });
    }
    std::map<std::uint64_t, FlowRecord> flows() {
        return call([&] { return flows_; });
    }
    void destroy_capture() {
        call([&] { capture_.reset(); });
    }
    // Waits until a closed flow to `server_port` that starts with `prefix` and has at least
    // `bytes` bytes exists; returns it.
    FlowRecord wait_closed_flow(std::uint16_t server_port, std::size_t bytes, std::chrono::milliseconds timeout,
                                const std::string& prefix = {}) {
        auto deadline = Clock::now() + timeout;
        while (Clock::now() < deadline) {
            std::optional<FlowRecord> found = call([&]() -> std::optional<FlowRecord> {
                for (auto& [id, record] : flows_) {
                    if (record.closed && record.server.port() == server_port && record.data.size() >= bytes &&
                        record.data.compare(0, prefix.size(), prefix) == 0) {
                        return record;
                    }
                }
                return std::nullopt;
            });
            if (found) return *found;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        FAIL("no closed flow to port " << server_port << " with " << bytes << " bytes within the timeout");
        return {};
    }

private:
    void stop() {
        if (!thread_.joinable()) return;
        if (capture_) {
            try {
                destroy_capture();
            } catch (...) {
            }
        }
        work_.reset();
        io_.stop();
        thread_.join();
    }

    boost::asio::io_context io_;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
    std::thread thread_;
    std::unique_ptr<PacketCapture> capture_;
    std::map<std::uint64_t, FlowRecord> flows_;
};

sockaddr_in ipv4(const std::string& ip, std::uint16_t port) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    REQUIRE(::inet_pton(AF_INET, ip.c_str(), &address.sin_addr) == 1);
    return address;
}

bool write_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

std::string read_all(int fd) {
    std::string out;
    char buffer[65536];
    for (;;) {
        ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        out.append(buffer, static_cast<std::size_t>(n));
    }
    return out;
}

// Sends `request` from a socket in `ns` to ip:port, half-closes, returns the whole reply.
std::string exchange(const h::Cluster& cluster, Ns ns, const std::string& ip, std::uint16_t port,
                     std::string_view request) {
    const bool v6 = ip.find(':') != std::string::npos;
    UniqueFd socket = cluster.socket_in(ns, v6 ? AF_INET6 : AF_INET, SOCK_STREAM);
    timeval timeout{10, 0};
    ::setsockopt(socket.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    if (v6) {
        sockaddr_in6 address{};
        address.sin6_family = AF_INET6;
        address.sin6_port = htons(port);
        REQUIRE(::inet_pton(AF_INET6, ip.c_str(), &address.sin6_addr) == 1);
        REQUIRE(::connect(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    } else {
        sockaddr_in address = ipv4(ip, port);
        REQUIRE(::connect(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    }
    REQUIRE(write_all(socket.get(), request));
    ::shutdown(socket.get(), SHUT_WR);
    return read_all(socket.get());
}

std::string sha256_hex(std::string_view data) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    REQUIRE(EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr) == 1);
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < length; ++i) {
        out.push_back(hex[digest[i] >> 4]);
        out.push_back(hex[digest[i] & 15]);
    }
    return out;
}

// curl -v prints each request header line as "> line"; the request bytes are those lines + CRLF.
std::string request_from_curl_verbose(const std::string& err) {
    std::string request;
    std::size_t position = 0;
    while (position < err.size()) {
        std::size_t end = err.find('\n', position);
        if (end == std::string::npos) end = err.size();
        std::string line = err.substr(position, end - position);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.rfind("> ", 0) == 0 || line == ">") {
            request += (line.size() > 2 ? line.substr(2) : std::string()) + "\r\n";
        }
        position = end + 1;
    }
    return request;
}

// The sink: reads each connection to the end and answers with the byte count.
pid_t start_sink(h::Cluster& cluster) {
    const char* script =
        "import socket\n"
        "s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n"
        "s.bind(('::', 9000))\n"
        "s.listen(16)\n"
        "while True:\n"
        "    c, _ = s.accept()\n"
        "    n = 0\n"
        "    while True:\n"
        "        b = c.recv(1 << 20)\n"
        "        if not b: break\n"
        "        n += len(b)\n"
        "    c.sendall(str(n).encode())\n"
        "    c.close()\n";
    pid_t pid = cluster.spawn_in(Ns::pod, {"python3", "-c", script});
    auto deadline = Clock::now() + std::chrono::seconds(5);
    while (Clock::now() < deadline) {
        UniqueFd probe = cluster.socket_in(Ns::pod, AF_INET, SOCK_STREAM);
        sockaddr_in address = ipv4("127.0.0.1", kSinkPort);
        if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) return pid;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL("the sink in the pod did not start listening on " << kSinkPort);
    return pid;
}

PacketCapture::Engine engine_named(const std::string& name) { return PacketCapture::parse_engine(name); }

}  // namespace

TEST_CASE("mirror capture delivers exactly the request bytes of curl and of a raw client") {
    const std::string engine_name = GENERATE(std::string("classic"), std::string("ebpf"));
    INFO("engine " << engine_name);
    auto cluster = h::Cluster::create();
    CaptureThread capture(*cluster, engine_named(engine_name));
    capture.set_ports({kHttpPort});
    CHECK(PacketCapture::to_string(capture.engine()) == engine_name);

    const std::string raw_request =
        "GET /hello.txt HTTP/1.1\r\nHost: pod\r\nX-Mirror-Test: raw-" + engine_name + "\r\nConnection: close\r\n\r\n";
    std::string reply = exchange(*cluster, Ns::peer, cluster->pod_ip(), kHttpPort, raw_request);
    CHECK(reply.rfind("HTTP/1.0 200", 0) == 0);  // the pod's own server answers during capture
    FlowRecord raw = capture.wait_closed_flow(kHttpPort, raw_request.size(), std::chrono::seconds(5), raw_request);
    CHECK(raw.data == raw_request);
    CHECK(raw.client.address().to_string() == cluster->peer_ip());
    CHECK(raw.server.address().to_string() == cluster->pod_ip());

    auto curl = cluster->run_in(Ns::peer, {"curl", "-sS", "-v", "--max-time", "5", "-H", "X-Mirror-Test: curl",
                                           "http://" + cluster->pod_ip() + "/hello.txt"});
    REQUIRE(curl.exit_code == 0);
    const std::string curl_request = request_from_curl_verbose(curl.err);
    REQUIRE(curl_request.rfind("GET /hello.txt HTTP/1.1\r\n", 0) == 0);
    REQUIRE(curl_request.size() > 30);
    auto deadline = Clock::now() + std::chrono::seconds(5);
    std::size_t matches = 0;
    while (Clock::now() < deadline && matches == 0) {
        for (auto& [id, record] : capture.flows()) {
            if (record.closed && record.data == curl_request) ++matches;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(matches == 1);
    // IPv6 from the peer.
    const std::string v6_request = "GET /hello.txt HTTP/1.1\r\nHost: pod6\r\nConnection: close\r\n\r\n";
    std::string v6_reply = exchange(*cluster, Ns::peer, cluster->pod_ip6(), kHttpPort, v6_request);
    CHECK(v6_reply.rfind("HTTP/1.0 200", 0) == 0);
    FlowRecord v6 = capture.wait_closed_flow(kHttpPort, v6_request.size(), std::chrono::seconds(5), v6_request);
    CHECK(v6.data == v6_request);
    CHECK(v6.client.address().to_string() == cluster->peer_ip6());
    CHECK(v6.server.address().to_string() == cluster->pod_ip6());

    // A connection the pod itself makes to port 80 elsewhere (the service) is not a mirrored flow.
    std::size_t flows_before = capture.flows().size();
    std::string service_reply = exchange(*cluster, Ns::pod, cluster->service_ip(), kHttpPort,
                                         "GET /hello.txt HTTP/1.1\r\nHost: echo\r\nConnection: close\r\n\r\n");
    CHECK(service_reply.rfind("HTTP/1.", 0) == 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK(capture.flows().size() == flows_before);

    auto stats = capture.stats();
    CHECK(stats.kernel_drops == 0);
    CHECK(stats.reassembly.flows_opened == 3);
    CHECK(stats.reassembly.gaps == 0);
}

TEST_CASE("mirror capture of a 10 MB upload is complete without kernel drops") {
    const std::string engine_name = GENERATE(std::string("classic"), std::string("ebpf"));
    INFO("engine " << engine_name);
    auto cluster = h::Cluster::create();
    start_sink(*cluster);
    CaptureThread capture(*cluster, engine_named(engine_name));
    capture.set_ports({kSinkPort});

    std::string upload(10u << 20, '\0');
    std::uint64_t state = 0x9e3779b97f4a7c15ull;
    for (char& byte : upload) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        byte = static_cast<char>(state);
    }
    auto started = Clock::now();
    std::string reply = exchange(*cluster, Ns::peer, cluster->pod_ip(), kSinkPort, upload);
    auto sent = Clock::now();
    CHECK(reply == std::to_string(upload.size()));
    FlowRecord flow = capture.wait_closed_flow(kSinkPort, upload.size(), std::chrono::seconds(20));
    CHECK(flow.reason == TcpReassembler::CloseReason::fin);
    CHECK(flow.data.size() == upload.size());
    CHECK(sha256_hex(flow.data) == sha256_hex(upload));
    auto stats = capture.stats();
    CHECK(stats.kernel_drops == 0);
    CHECK(stats.reassembly.gaps == 0);
    double seconds = std::chrono::duration<double>(flow.closed_at - started).count();
    std::cout << "agent_mirror[" << engine_name << "]: 10 MiB upload sent in "
              << std::chrono::duration<double>(sent - started).count() * 1000 << " ms, captured in " << seconds * 1000
              << " ms (" << (upload.size() / 1e6) / seconds << " MB/s), packets " << stats.packets
              << ", kernel_drops " << stats.kernel_drops << ", retransmitted_bytes "
              << stats.reassembly.retransmitted_bytes << ", out_of_order " << stats.reassembly.out_of_order_segments
              << std::endl;
}

TEST_CASE("mirror capture sees loopback traffic in the pod once and ignores other ports") {
    const std::string engine_name = GENERATE(std::string("classic"), std::string("ebpf"));
    INFO("engine " << engine_name);
    auto cluster = h::Cluster::create();
    start_sink(*cluster);
    CaptureThread capture(*cluster, engine_named(engine_name));
    capture.set_ports({kHttpPort});

    const std::string request = "GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-Loop: 1\r\nConnection: close\r\n\r\n";
    std::string reply = exchange(*cluster, Ns::pod, "127.0.0.1", kHttpPort, request);
    CHECK(reply.rfind("HTTP/1.0 200", 0) == 0);
    FlowRecord flow = capture.wait_closed_flow(kHttpPort, request.size(), std::chrono::seconds(5), request);
    CHECK(flow.data == request);  // once, not twice
    // The reassembler would hide a second copy of each segment as a retransmit: none may exist.
    CHECK(capture.stats().reassembly.retransmitted_bytes == 0);
    CHECK(flow.client.address().to_string() == "127.0.0.1");
    CHECK(capture.flows().size() == 1);

    // Traffic to a port that is not in the set never reaches user space. The last ACK/FIN of the
    // connection above may still be on their way: let them arrive first.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto before = capture.stats();
    std::string sink_reply = exchange(*cluster, Ns::peer, cluster->pod_ip(), kSinkPort, "not mirrored");
    CHECK(sink_reply == "12");
    std::string loop_reply = exchange(*cluster, Ns::pod, "127.0.0.1", kSinkPort, "nor this");
    CHECK(loop_reply == "8");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto after = capture.stats();
    CHECK(after.packets == before.packets);
    CHECK(capture.flows().size() == 1);
}

TEST_CASE("mirror capture stops on an empty port set and leaks no fd") {
    const std::string engine_name = GENERATE(std::string("classic"), std::string("ebpf"));
    INFO("engine " << engine_name);
    auto cluster = h::Cluster::create();
    std::size_t fds_before = open_fd_count();
    {
        CaptureThread capture(*cluster, engine_named(engine_name));
        capture.set_ports({kHttpPort});
        auto open_stats = capture.stats();
        CHECK(open_stats.interfaces.size() >= 2);  // lo and eth0
        std::string request = "GET /hello.txt HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n";
        exchange(*cluster, Ns::peer, cluster->pod_ip(), kHttpPort, request);
        capture.wait_closed_flow(kHttpPort, request.size(), std::chrono::seconds(5));

        // Change of set: port 80 removed, 81 added (the filter is replaced in place).
        std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the connection's last segments
        capture.set_ports({81});
        auto packets = capture.stats().packets;
        exchange(*cluster, Ns::peer, cluster->pod_ip(), kHttpPort, request);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        CHECK(capture.stats().packets == packets);

        capture.set_ports({kHttpPort});
        capture.set_ports({});
        CHECK(capture.stats().interfaces.empty());
        std::string reply = exchange(*cluster, Ns::peer, cluster->pod_ip(), kHttpPort, request);
        CHECK(reply.rfind("HTTP/1.0 200", 0) == 0);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        CHECK(capture.flows().size() == 1);
    }
    CHECK(open_fd_count() == fds_before);
}

TEST_CASE("mirror capture engine auto picks one engine and reports it") {
    auto cluster = h::Cluster::create();
    CaptureThread capture(*cluster, PacketCapture::Engine::auto_);
    CHECK(capture.engine() == PacketCapture::Engine::auto_);
    capture.set_ports({kHttpPort});
    auto engine = capture.engine();
    CHECK(engine != PacketCapture::Engine::auto_);
    std::cout << "agent_mirror: engine auto resolved to " << PacketCapture::to_string(engine) << std::endl;
    std::string request = "GET /hello.txt HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n";
    exchange(*cluster, Ns::peer, cluster->pod_ip(), kHttpPort, request);
    CHECK(capture.wait_closed_flow(kHttpPort, request.size(), std::chrono::seconds(5)).data == request);
}

namespace {

// Frames that pass the kernel filter (TCP, port 80) but whose lengths lie: IPv4 total length past
// the frame, IHL past the frame, TCP data offset past the packet, IPv6 payload length past the
// frame, a cut TCP header. Sent with an AF_PACKET socket on the pod's lo.
std::vector<std::string> malformed_frames(const unsigned char pod_mac[6]) {
    auto ethernet = [&](std::uint16_t type) {
        std::string frame(reinterpret_cast<const char*>(pod_mac), 6);
        frame += std::string("\x02\x00\x00\x00\x00\x01", 6);
        frame.push_back(static_cast<char>(type >> 8));
        frame.push_back(static_cast<char>(type & 0xff));
        return frame;
    };
    auto ipv4 = [](unsigned char ihl, std::uint16_t total_length) {
        std::string header(20, '\0');
        header[0] = static_cast<char>(0x40 | ihl);
        header[2] = static_cast<char>(total_length >> 8);
        header[3] = static_cast<char>(total_length & 0xff);
        header[8] = 64;
        header[9] = 6;  // TCP
        header.replace(12, 4, "\x0a\xfa\x00\x04", 4);
        header.replace(16, 4, "\x0a\xfa\x00\x0a", 4);
        return header;
    };
    auto tcp = [](unsigned char data_offset_words) {
        std::string header(20, '\0');
        header[0] = static_cast<char>(0xc3);
        header[1] = 0x50;  // source port 50000
        header[3] = 80;    // destination port 80
        header[12] = static_cast<char>(data_offset_words << 4);
        header[13] = 0x18;  // PSH ACK
        return header + "GET / HTTP/1.1\r\n";
    };
    std::vector<std::string> frames;
    frames.push_back(ethernet(0x0800) + ipv4(5, 1400) + tcp(5));   // total length past the frame
    frames.push_back(ethernet(0x0800) + ipv4(15, 56) + tcp(5));    // IHL = 60 bytes, past the packet
    frames.push_back(ethernet(0x0800) + ipv4(5, 56) + tcp(15));    // TCP header of 60 bytes > packet
    frames.push_back(ethernet(0x0800) + ipv4(5, 10) + tcp(5));     // total length < header length
    std::string ipv6(40, '\0');
    ipv6[0] = 0x60;
    ipv6[4] = 0x10;  // payload length 4096
    ipv6[6] = 6;
    ipv6[7] = 64;
    frames.push_back(ethernet(0x86dd) + ipv6 + tcp(5));             // payload length past the frame
    frames.push_back(ethernet(0x0800) + ipv4(5, 40).substr(0, 20) + std::string("\xc3\x50\x00\x50", 4));  // cut TCP
    return frames;
}

}  // namespace

TEST_CASE("mirror capture skips malformed frames and keeps capturing") {
    const std::string engine_name = GENERATE(std::string("classic"), std::string("ebpf"));
    INFO("engine " << engine_name);
    auto cluster = h::Cluster::create();
    CaptureThread capture(*cluster, engine_named(engine_name));
    capture.set_ports({kHttpPort});

    // Injected on the pod's lo (a bridge with br_netfilter would drop malformed IP before the pod):
    // lo's "Ethernet" header has zero MACs and the frame comes back in as PACKET_HOST.
    const unsigned char pod_mac[6] = {0, 0, 0, 0, 0, 0};
    UniqueFd raw = cluster->socket_in(Ns::pod, AF_PACKET, SOCK_RAW, 0);
    REQUIRE(raw.valid());
    ifreq request_interface{};
    std::strncpy(request_interface.ifr_name, "lo", IFNAMSIZ - 1);
    REQUIRE(::ioctl(raw.get(), SIOCGIFINDEX, &request_interface) == 0);
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_ifindex = request_interface.ifr_ifindex;
    to.sll_halen = 6;
    std::memcpy(to.sll_addr, pod_mac, 6);
    auto before = capture.stats();
    for (const std::string& frame : malformed_frames(pod_mac)) {
        REQUIRE(::sendto(raw.get(), frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) ==
                static_cast<ssize_t>(frame.size()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto after = capture.stats();
    CHECK(after.packets >= before.packets + 5);  // they reached user space (the filter passed them)
    CHECK(capture.flows().empty());              // and none was taken for a flow

    const std::string request = "GET /hello.txt HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n";
    CHECK(exchange(*cluster, Ns::peer, cluster->pod_ip(), kHttpPort, request).rfind("HTTP/1.0 200", 0) == 0);
    CHECK(capture.wait_closed_flow(kHttpPort, request.size(), std::chrono::seconds(5), request).data == request);
}

TEST_CASE("mirror capture lets go of an interface that disappears and goes on with the others") {
    const std::string engine_name = GENERATE(std::string("classic"), std::string("ebpf"));
    INFO("engine " << engine_name);
    auto cluster = h::Cluster::create();
    CaptureThread capture(*cluster, engine_named(engine_name));
    capture.set_ports({kHttpPort});
    auto has = [](const std::vector<std::string>& v, const char* name) {
        return std::find(v.begin(), v.end(), name) != v.end();
    };
    REQUIRE(has(capture.stats().interfaces, "eth0"));

    // The pod's veth goes away (as when a pod is deleted while mirrored): its packet socket then
    // reports an error on every poll. The capture must drop it, not spin on it.
    auto del = cluster->run_in(Ns::pod, {"ip", "link", "del", "eth0"});
    REQUIRE(del.exit_code == 0);
    auto thread_cpu = [&] {
        return capture.call([] {
            timespec ts{};
            ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
            return std::chrono::nanoseconds(ts.tv_sec * 1000000000LL + ts.tv_nsec);
        });
    };
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto cpu_before = thread_cpu();
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    auto busy = thread_cpu() - cpu_before;
    CHECK(busy < std::chrono::milliseconds(150));  // a spinning loop takes ~600 ms of these 600
    CHECK_FALSE(has(capture.stats().interfaces, "eth0"));

    // Loopback capture goes on.
    const std::string request = "GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    std::string reply = exchange(*cluster, Ns::pod, "127.0.0.1", kHttpPort, request);
    CHECK(reply.rfind("HTTP/1.0 200", 0) == 0);
    FlowRecord flow = capture.wait_closed_flow(kHttpPort, request.size(), std::chrono::seconds(5), request);
    CHECK(flow.data == request);
}
