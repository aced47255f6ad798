// content.cpp: fixed content of the test pod and service (pod files, env, the service's python script).
#include <cstdint>
#include <string>
#include <vector>

#include "content.hpp"
#include "mirrord/harness/cluster.hpp"

namespace mirrord::harness {

std::vector<std::string> pod_dir_entries() { return {"a.txt", "b.txt", "c.txt", "sub"}; }

std::string pod_big_bin() {
    std::string out;
    out.resize(kPodBigBinSize);
    std::uint32_t x = 0x6d697272u;  // xorshift32, seed "mirr"
    for (std::size_t i = 0; i < out.size(); i += 4) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        for (std::size_t b = 0; b < 4 && i + b < out.size(); ++b) {
            out[i + b] = static_cast<char>((x >> (8 * b)) & 0xff);
        }
    }
    return out;
}

std::vector<std::string> pod_base_env(const std::string& pod_name) {
    return {"MX_POD_ENV=hello-from-pod", "DATABASE_URL=postgres://db:5432/app", "PATH=/usr/bin:/bin:/usr/sbin",
            "HOSTNAME=" + pod_name};
}

namespace detail {

std::string pod_hosts(const std::string& pod_name) {
    return "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" + std::string(kPodIp) + "\t" +
           pod_name + "\n" + std::string(kPodIp6) + "\t" + pod_name + "\n" + std::string(kPodOnlyHostIp) + "\t" +
           kPodOnlyHost + "\n";
}

std::string pod_resolv_conf() {
    return "nameserver " + std::string(kDnsIp) + "\nsearch " + kSearchDomains + "\noptions ndots:5\n";
}

// The service: HTTP (serves a dir) + TCP echo + UDP echo, all dual-stack on '::'.
const char* service_script() {
    return R"PY(# service.py: the harness's cluster service: HTTP server + TCP echo + UDP echo (dual-stack).
import functools, http.server, socket, socketserver, sys, threading

root, http_port, tcp_port, udp_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def sock6(kind):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return s

udp = sock6(socket.SOCK_DGRAM)
udp.bind(('::', udp_port))
tcp = sock6(socket.SOCK_STREAM)
tcp.bind(('::', tcp_port))
tcp.listen(128)

class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        socketserver.TCPServer.server_bind(self)  # no getfqdn(): no DNS lookup at start
        self.server_name = 'echo'
        self.server_port = http_port

def udp_loop():
    while True:
        data, addr = udp.recvfrom(65535)
        udp.sendto(data, addr)

def tcp_conn(conn):
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            conn.sendall(data)

def tcp_loop():
    while True:
        conn, _ = tcp.accept()
        threading.Thread(target=tcp_conn, args=(conn,), daemon=True).start()

threading.Thread(target=udp_loop, daemon=True).start()
threading.Thread(target=tcp_loop, daemon=True).start()
Server(('::', http_port), functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)).serve_forever()
)PY";
}

}  // namespace detail
}  // namespace mirrord::harness
