# e2e_app.py: the Python "local app" of the exec end-to-end tests (tests/integration/exec/).
# Run as `/usr/bin/python3 e2e_app.py COMMAND [ARGS]` under `mirrord exec` in the harness's
# laptop netns; it prints ONE JSON object on stdout (each check is a key whose value is the result,
# or {"exception": ..., "errno": ...} when that check raised), so one broken piece never hides
# the others. The C++ tests compare the values with the harness's constants.
import asyncio
import errno
import hashlib
import json
import os
import select
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
import urllib.request


def attempt(fn):
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - every failure becomes data for the test
        return {"exception": f"{type(e).__name__}: {e}", "errno": getattr(e, "errno", None)}


def read_text(path):
    with open(path, "r") as f:
        return f.read()


def read_big(path):
    with open(path, "rb") as f:
        data = f.read()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def read_big_chunked(path):
    # Small reads, a seek back and a pread, as a streaming reader would do.
    h = hashlib.sha256()
    total = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            chunk = f.read(65536)
            if not chunk:
                break
            h.update(chunk)
            total += len(chunk)
        f.seek(1000)
        at_1000 = f.read(16).hex()
        fd = f.fileno()
        pread_2m = os.pread(fd, 16, 2 * 1024 * 1024).hex()
    return {"size": total, "sha256": h.hexdigest(), "at_1000": at_1000, "pread_2m": pread_2m}


def stat_info(path):
    st = os.stat(path)
    return {"size": st.st_size, "isreg": stat.S_ISREG(st.st_mode), "isdir": stat.S_ISDIR(st.st_mode)}


def addresses(name, family=0, port=80):
    infos = socket.getaddrinfo(name, port, family, socket.SOCK_STREAM)
    return sorted({ai[4][0] for ai in infos})


def cmd_env(_args):
    out = {k: os.environ.get(k) for k in ("MX_POD_ENV", "DATABASE_URL", "MX_EXTRA")}
    out["gethostname"] = attempt(socket.gethostname)  # feature.hostname: the pod's name
    return out


def cmd_files(_args):
    return {
        "hello": attempt(lambda: read_text("/app/hello.txt")),
        "config": attempt(lambda: read_text("/app/config.txt")),
        "big": attempt(lambda: read_big("/app/big.bin")),
        "big_chunked": attempt(lambda: read_big_chunked("/app/big.bin")),
        "listdir": attempt(lambda: sorted(os.listdir("/app/dir"))),
        "listdir_sub": attempt(lambda: sorted(os.listdir("/app/dir/sub"))),
        "scandir_types": attempt(lambda: sorted(
            f"{e.name}:{'d' if e.is_dir() else 'f'}" for e in os.scandir("/app/dir"))),
        "stat_big": attempt(lambda: stat_info("/app/big.bin")),
        "stat_dir": attempt(lambda: stat_info("/app/dir")),
        "exists_hello": attempt(lambda: os.path.exists("/app/hello.txt")),
        "exists_missing": attempt(lambda: os.path.exists("/app/no-such-file")),
        "open_missing": attempt(lambda: read_text("/app/no-such-file")),
        "etc_hostname": attempt(lambda: read_text("/etc/hostname")),
    }


def cmd_dns(args):
    pod_only = args[0]
    return {
        "short": attempt(lambda: addresses("echo")),
        "short_v4": attempt(lambda: addresses("echo", socket.AF_INET)),
        "fqdn": attempt(lambda: addresses("echo.default.svc.cluster.local")),
        "fqdn_v6": attempt(lambda: addresses("echo.default.svc.cluster.local", socket.AF_INET6)),
        "pod_only": attempt(lambda: addresses(pod_only, socket.AF_INET)),
        "gethostbyname": attempt(lambda: socket.gethostbyname("echo")),
        "missing": attempt(lambda: addresses("no-such-service")),
    }


def cmd_raw_dns(args):
    # A resolver that bypasses getaddrinfo: reads /etc/resolv.conf (the pod's, a built-in
    # remote read-only path) and sends a DNS query over UDP to port 53 itself.
    name = args[0]

    def ask():
        with open("/etc/resolv.conf") as f:
            ns = [line.split()[1] for line in f if line.startswith("nameserver")][0]
        query = struct.pack(">HHHHHH", 0x4d52, 0x0100, 1, 0, 0, 0)
        query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
        query += struct.pack(">HH", 1, 1)  # A, IN
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        s.sendto(query, (ns, 53))
        data, addr = s.recvfrom(4096)
        s.close()
        ident, _flags, _qd, answers = struct.unpack(">HHHH", data[:8])
        return {"nameserver": ns, "from": addr[0], "id": ident, "answers": answers,
                "last_a": socket.inet_ntoa(data[-4:])}
    return {"dns": attempt(ask)}


def cmd_errors(_args):
    # Connection errors are the ones seen inside the pod (locally everything would be ENETUNREACH).
    def blocking(host, port, timeout=None):
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        if timeout:
            s.settimeout(timeout)
        try:
            s.connect((host, port))
            return "connected"
        finally:
            s.close()

    def nonblocking(host, port):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex((host, port))
        if rc == errno.EINPROGRESS:
            select.select([], [s], [], 5)
            rc = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        s.close()
        return errno.errorcode.get(rc, str(rc))
    return {
        "refused": attempt(lambda: blocking("10.250.0.3", 9)),
        "refused_timeout": attempt(lambda: blocking("10.250.0.3", 9, 3)),
        "refused_nonblocking": attempt(lambda: nonblocking("10.250.0.3", 9)),
        "refused_by_name": attempt(lambda: socket.create_connection(("echo", 9), timeout=3)),
    }


def cmd_exec_keep(args):
    # execve keeps the session: a connected socket and a remote file fd inherited across exec
    # still work in the new image (getpeername = the service, data flows, the offset is kept).
    if not args:
        s = socket.create_connection(("echo", 7), timeout=5)
        f = open("/app/big.bin", "rb", buffering=0)
        f.read(1000)
        for fd in (s.fileno(), f.fileno()):
            os.set_inheritable(fd, True)
        os.execv(sys.executable, [sys.executable, os.path.abspath(__file__), "exec_keep",
                                  str(s.fileno()), str(f.fileno())])
    sock_fd, file_fd = int(args[0]), int(args[1])

    def sock():
        s = socket.socket(fileno=sock_fd)
        s.settimeout(5)
        peer = s.getpeername()
        s.sendall(b"after exec")
        return {"peer": peer[0], "port": peer[1], "echo": s.recv(100).decode()}
    return {
        "socket": attempt(sock),
        "file_offset": attempt(lambda: os.lseek(file_fd, 0, os.SEEK_CUR)),
        "file_next": attempt(lambda: os.read(file_fd, 16).hex()),
        "hello": attempt(lambda: read_text("/app/hello.txt")),
    }


def cmd_probe_loop(args):
    # Repeats a pod file read, a DNS lookup and a TCP echo every 250 ms, recording each result
    # (for the agent-loss test: the app must neither hang nor crash when its agent dies).
    rounds = int(args[0])
    out = []
    for _ in range(rounds):
        r = {}
        t = time.monotonic()
        r["file"] = attempt(lambda: read_text("/app/hello.txt"))
        r["dns"] = attempt(lambda: socket.gethostbyname("echo"))

        def tcp():
            s = socket.create_connection(("10.250.0.3", 7), timeout=2)
            s.sendall(b"ping")
            data = s.recv(10).decode()
            s.close()
            return data
        r["tcp"] = attempt(tcp)
        r["ms"] = int((time.monotonic() - t) * 1000)
        out.append(r)
        sys.stdout.write("round\n")
        sys.stdout.flush()
        time.sleep(0.25)
    return {"rounds": out}


def cmd_http(_args):
    def get():
        with urllib.request.urlopen("http://echo/hello.txt", timeout=5) as r:
            return {"status": r.status, "body": r.read().decode()}
    return {"get": attempt(get)}


def cmd_udp(_args):
    def unconnected():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        s.sendto(b"udp ping by name", ("echo", 7))
        data, addr = s.recvfrom(1000)
        s.close()
        return {"data": data.decode(), "from": addr[0], "port": addr[1]}

    def connected():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        s.connect(("echo", 7))
        s.send(b"connected udp ping")
        data = s.recv(1000)
        peer = s.getpeername()
        s.close()
        return {"data": data.decode(), "peer": peer[0], "port": peer[1]}
    return {"unconnected": attempt(unconnected), "connected": attempt(connected)}


def cmd_ipv6(args):
    ip = args[0]

    def echo():
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect((ip, 7))
        peer = s.getpeername()  # before the close: a fully closed socket has no peer (ENOTCONN)
        payload = b"ipv6 echo " * 1000
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        s.close()
        return {"same": got == payload, "len": len(got), "peer": peer[0], "port": peer[1]}
    return {"echo": attempt(echo)}


def cmd_fs_read_mode(args):
    local_path = args[0]

    def write_local():
        with open(local_path, "w") as f:
            f.write("written locally\n")
        return read_text(local_path)
    def write_pod_path():
        # In read mode a write goes local: the laptop has no /app, so this fails with ENOENT
        # and the pod's file is untouched.
        with open("/app/hello.txt", "a") as f:
            f.write("appended from the laptop\n")
        return True
    return {"hello": attempt(lambda: read_text("/app/hello.txt")), "write_local": attempt(write_local),
            "write_pod_path": attempt(write_pod_path)}


def cmd_fs_local_mode(_args):
    return {"hello": attempt(lambda: read_text("/app/hello.txt")),
            "exists_hello": attempt(lambda: os.path.exists("/app/hello.txt"))}


def cmd_fs_write_mode(args):
    path, content = args[0], args[1]

    def write():
        with open(path, "w") as f:
            f.write(content)
        return True
    return {"write": attempt(write), "read_back": attempt(lambda: read_text(path)),
            "hello": attempt(lambda: read_text("/app/hello.txt"))}


def cmd_fs_write_ops(args):
    # write mode: directory and file operations on pod paths (checked in the pod by the test).
    d = args[0]

    def big():
        data = bytes(range(256)) * 8192  # 2 MiB
        with open(f"{d}/big.out", "wb") as f:
            f.write(data)
        return hashlib.sha256(data).hexdigest()

    def append():
        for word in ("one\n", "two\n"):
            with open(f"{d}/log.txt", "a") as f:
                f.write(word)
        return read_text(f"{d}/log.txt")

    def pwrite_truncate():
        fd = os.open(f"{d}/p.bin", os.O_RDWR | os.O_CREAT, 0o644)
        os.write(fd, b"0123456789")
        os.pwrite(fd, b"AB", 3)
        os.ftruncate(fd, 8)
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 100).decode()
        size = os.fstat(fd).st_size
        os.close(fd)
        return [data, size]
    return {
        "mkdir": attempt(lambda: os.mkdir(d) or True),
        "big": attempt(big),
        "append": attempt(append),
        "pwrite_truncate": attempt(pwrite_truncate),
        "excl_existing": attempt(lambda: os.open("/app/hello.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL)),
        "rename": attempt(lambda: os.rename(f"{d}/log.txt", f"{d}/log2.txt") or True),
        "unlink": attempt(lambda: os.unlink(f"{d}/p.bin") or True),
        "listdir": attempt(lambda: sorted(os.listdir(d))),
        "rmdir_nonempty": attempt(lambda: os.rmdir(d)),
    }


def cmd_fs_lists(_args):
    # For feature.fs.{not_found,local,read_write} patterns on pod paths (mode read).
    def write(path):
        with open(path, "w") as f:
            f.write("written\n")
        return read_text(path)
    return {
        "config": attempt(lambda: read_text("/app/config.txt")),
        "hello": attempt(lambda: read_text("/app/hello.txt")),
        "dir": attempt(lambda: sorted(os.listdir("/app/dir"))),
        "write_rw": attempt(lambda: write("/app/rw.txt")),
        "write_other": attempt(lambda: write("/app/other.txt")),
    }


def cmd_reach(_args):
    # For ext launches: one pod file and the service.
    return {"hello": attempt(lambda: read_text("/app/hello.txt")), **cmd_http([]), **cmd_env([])}


def cmd_spawn(_args):
    # Children started the ways Python starts them: subprocess (fork/vfork + exec in C),
    # os.posix_spawn (glibc's clone(CLONE_VM|CLONE_VFORK) + internal execve), os.system (sh -c).
    def posix_spawn():
        r, w = os.pipe()
        pid = os.posix_spawn("/bin/cat", ["cat", "/app/hello.txt"], os.environ,
                             file_actions=[(os.POSIX_SPAWN_DUP2, w, 1)])
        os.close(w)
        os.waitpid(pid, 0)
        data = os.read(r, 1000).decode()
        os.close(r)
        return data

    def system():
        return os.system("test \"$(cat /app/hello.txt)\" = 'hello from the pod'")
    return {
        "subprocess": attempt(lambda: subprocess.run(["cat", "/app/hello.txt"], capture_output=True,
                                                     text=True, timeout=10).stdout),
        "subprocess_curl": attempt(lambda: subprocess.run(
            ["curl", "-sS", "--max-time", "5", "http://echo/hello.txt"], capture_output=True, text=True,
            timeout=10).stdout),
        "posix_spawn": attempt(posix_spawn),
        "system": attempt(system),
    }


def cmd_threads(args):
    # Several threads at once through the layer's single intproxy connection.
    threads, rounds = int(args[0]), int(args[1])
    errors = []
    done = [0]
    lock = threading.Lock()

    def worker():
        for _ in range(rounds):
            try:
                with urllib.request.urlopen("http://echo/hello.txt", timeout=5) as r:
                    body = r.read().decode()
                if body != "hello from the echo service\n":
                    raise ValueError(f"service body {body!r}")
                if read_text("/app/hello.txt") != "hello from the pod\n":
                    raise ValueError("pod file")
                if addresses("echo.default.svc.cluster.local", socket.AF_INET) != ["10.250.0.3"]:
                    raise ValueError("dns")
                with lock:
                    done[0] += 1
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return {"done": done[0], "errors": errors[:5], "error_count": len(errors)}


def cmd_listen(_args):
    # A listener whose port mirrord subscribes (mirror) still takes the app's own local connections.
    def serve():
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        a, _ = srv.accept()
        c.sendall(b"local listener")
        data = a.recv(100).decode()
        for s in (a, c, srv):
            s.close()
        return data

    def serve_fixed(port):
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("0.0.0.0", port))
        srv.listen()
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        a, peer = srv.accept()
        c.sendall(b"fixed port")
        data = a.recv(100).decode()
        for s in (a, c, srv):
            s.close()
        return {"data": data, "peer": peer[0]}
    return {"ephemeral": attempt(serve), "fixed": attempt(lambda: serve_fixed(18080))}


def cmd_asyncio(args):
    # An asyncio app: getaddrinfo in the default executor, non-blocking sockets on epoll.
    n = int(args[0])

    async def tcp(i):
        r, w = await asyncio.wait_for(asyncio.open_connection("echo", 7), 5)
        msg = f"asyncio connection {i}\n".encode() * 200
        w.write(msg)
        await w.drain()
        w.write_eof()
        data = await asyncio.wait_for(r.read(), 5)
        w.close()
        await w.wait_closed()
        return data == msg

    async def udp():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                if not fut.done():
                    fut.set_result({"data": data.decode(), "from": addr[0]})
        transport, _ = await loop.create_datagram_endpoint(Proto, remote_addr=("echo", 7))
        transport.sendto(b"asyncio datagram")
        try:
            return await asyncio.wait_for(fut, 5)
        finally:
            transport.close()

    async def main():
        rs = await asyncio.gather(*[tcp(i) for i in range(n)], return_exceptions=True)
        u = await asyncio.gather(udp(), return_exceptions=True)
        return {"tcp_ok": sum(1 for r in rs if r is True),
                "tcp_errors": [repr(r) for r in rs if r is not True][:5],
                "udp": u[0] if not isinstance(u[0], BaseException) else {"exception": repr(u[0])}}
    return asyncio.run(main())


def cmd_fd_storm(args):
    # Apps that close every fd (daemons, close_fds) or dup2 over a range of fds: the layer's own
    # intproxy connection must survive (or come back) and the pod must stay reachable.
    how = args[0]
    if how == "closerange":
        os.closerange(3, 65536)
    elif how == "close_loop":
        for fd in range(3, 4096):
            try:
                os.close(fd)
            except OSError:
                pass
    elif how == "dup2_over":
        null = os.open("/dev/null", os.O_RDONLY)
        for fd in range(3, 1100):
            if fd != null:
                try:
                    os.dup2(null, fd)
                except OSError:
                    pass

    def get():
        with urllib.request.urlopen("http://echo/hello.txt", timeout=5) as r:
            return r.read().decode()
    return {"hello": attempt(lambda: read_text("/app/hello.txt")), "http": attempt(get)}


def cmd_environ(args):
    # The given variables as the app sees them (None when unset).
    return {k: os.environ.get(k) for k in args}


def cmd_routes(_args):
    # Which of the service's ports and names are reached (for outgoing/dns config tests).
    def tcp_echo():
        s = socket.create_connection(("10.250.0.3", 7), timeout=3)
        s.sendall(b"route check")
        data = s.recv(100).decode()
        s.close()
        return data

    def http():
        with urllib.request.urlopen("http://10.250.0.3/hello.txt", timeout=3) as r:
            return r.read().decode()
    return {"http": attempt(http), "echo": attempt(tcp_echo), "dns": attempt(lambda: socket.gethostbyname("echo"))}


def cmd_exit(args):
    sys.stdout.write(json.dumps({"exiting": int(args[0])}) + "\n")
    sys.stdout.flush()
    os._exit(int(args[0]))


COMMANDS = {
    "env": cmd_env, "files": cmd_files, "dns": cmd_dns, "http": cmd_http, "udp": cmd_udp,
    "ipv6": cmd_ipv6, "fs_read_mode": cmd_fs_read_mode, "fs_local_mode": cmd_fs_local_mode,
    "fs_write_mode": cmd_fs_write_mode, "reach": cmd_reach, "exit": cmd_exit, "spawn": cmd_spawn,
    "threads": cmd_threads, "listen": cmd_listen, "asyncio": cmd_asyncio, "fd_storm": cmd_fd_storm,
    "environ": cmd_environ, "routes": cmd_routes, "fs_write_ops": cmd_fs_write_ops,
    "raw_dns": cmd_raw_dns, "errors": cmd_errors, "exec_keep": cmd_exec_keep,
    "probe_loop": cmd_probe_loop, "fs_lists": cmd_fs_lists,
}

if __name__ == "__main__":
    result = COMMANDS[sys.argv[1]](sys.argv[2:])
    sys.stdout.write(json.dumps(result) + "\n")
