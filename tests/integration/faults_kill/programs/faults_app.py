# faults_app.py: the transfer apps of the kill -9 fault tests (tests/integration/faults_kill/).
# Each mode keeps a transfer going until it breaks, then prints ONE line
#   RESULT {"mode": ..., "first": "EIO"|"ECONNRESET"|"EOF"|..., "errno": ..., "t_err": ..., ...}
# and exits 0. Times are time.monotonic() (CLOCK_MONOTONIC, the clock the C++ test reads with
# steady_clock), so the test computes how long the app waited after the kill. Modes:
#   file PATH            pread loop over a remote file (256 KiB chunks, wrapping at EOF)
#   tcp HOST PORT        connect, then echo round trips of 64 KiB blocks (content checked)
#   serve PORT           listen (stolen/mirrored port), accept ONE connection, echo it back
#   echo_server PORT     plain threaded TCP echo server (run inside the pod with python3 -c)
#   http_loop HOST PORT PATH   GET PATH (HTTP/1.0) again and again, reading slowly
# "READY <mode>" is printed once the transfer is under way (the test kills only after it).
# A transfer that never breaks ends after LIMIT seconds (env FAULTS_LIMIT, default 40) with
# "first": null, so a test sees "no error" instead of hanging on the app.
import errno
import json
import os
import socket
import sys
import threading
import time

LIMIT = float(os.environ.get("FAULTS_LIMIT", "40"))
BLOCK = 64 * 1024


def name_of(e):
    if isinstance(e, OSError) and e.errno is not None:
        return errno.errorcode.get(e.errno, str(e.errno))
    return type(e).__name__


def report(mode, first, last, t_err, t_last_ok, nbytes, detail=""):
    print("RESULT " + json.dumps({"mode": mode, "first": first, "errno": last, "t_err": t_err,
                                  "t_last_ok": t_last_ok, "bytes": nbytes, "detail": detail}), flush=True)


def ready(mode):
    print("READY " + mode, flush=True)


def mode_file(path):
    fd = os.open(path, os.O_RDONLY)
    off = total = 0
    told = False
    t_last_ok = time.monotonic()
    end = t_last_ok + LIMIT
    while time.monotonic() < end:
        try:
            data = os.pread(fd, 256 * 1024, off)
        except OSError as e:
            report("file", name_of(e), name_of(e), time.monotonic(), t_last_ok, total, str(e))
            return
        t_last_ok = time.monotonic()
        if not data:
            off = 0
            continue
        off += len(data)
        total += len(data)
        if not told and total >= 4 * 1024 * 1024:
            told = True
            ready("file")
    report("file", None, None, None, t_last_ok, total)


def after_eof(sock):
    # The peer closed cleanly: an app that goes on writing gets the kernel's error (the RST to
    # its next segment makes the one after fail with EPIPE or ECONNRESET).
    for _ in range(100):
        try:
            sock.sendall(b"x" * 1024)
        except OSError as e:
            return name_of(e)
        time.sleep(0.02)
    return None


def echo_rounds(mode, sock, ready_after):
    pattern = bytes(range(256)) * (BLOCK // 256)
    total = 0
    told = False
    t_last_ok = time.monotonic()
    end = t_last_ok + LIMIT
    while time.monotonic() < end:
        try:
            sock.sendall(pattern)
            got = 0
            while got < BLOCK:
                chunk = sock.recv(BLOCK - got)
                if not chunk:
                    t = time.monotonic()
                    report(mode, "EOF", after_eof(sock), t, t_last_ok, total)
                    return
                if chunk != pattern[got:got + len(chunk)]:
                    report(mode, "CORRUPT", None, time.monotonic(), t_last_ok, total)
                    return
                got += len(chunk)
        except OSError as e:
            report(mode, name_of(e), name_of(e), time.monotonic(), t_last_ok, total, str(e))
            return
        t_last_ok = time.monotonic()
        total += BLOCK
        if not told and total >= ready_after:
            told = True
            ready(mode)
    report(mode, None, None, None, t_last_ok, total)


def mode_tcp(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.connect((host, int(port)))
    echo_rounds("tcp", s, 1024 * 1024)


def mode_serve(port):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", int(port)))
    srv.listen(8)
    print("LISTENING " + port, flush=True)
    conn, _ = srv.accept()
    total = 0
    told = False
    t_last_ok = time.monotonic()
    end = t_last_ok + LIMIT
    while time.monotonic() < end:
        try:
            data = conn.recv(BLOCK)
            if not data:
                t = time.monotonic()
                report("serve", "EOF", after_eof(conn), t, t_last_ok, total)
                return
            conn.sendall(data)
        except OSError as e:
            report("serve", name_of(e), name_of(e), time.monotonic(), t_last_ok, total, str(e))
            return
        t_last_ok = time.monotonic()
        total += len(data)
        if not told and total >= 1024 * 1024:
            told = True
            ready("serve")
    report("serve", None, None, None, t_last_ok, total)


def mode_echo_server(port):
    srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("::", int(port)))
    srv.listen(16)
    print("READY echo_server " + port, flush=True)

    def serve(c):
        with c:
            while True:
                try:
                    data = c.recv(BLOCK)
                    if not data:
                        return
                    c.sendall(data)
                except OSError:
                    return
    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def mode_http_loop(host, port, path):
    total = 0
    rounds = 0
    t_last_ok = time.monotonic()
    end = t_last_ok + LIMIT
    while time.monotonic() < end:
        try:
            s = socket.create_connection((host, int(port)))
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            got = b""
            while True:
                chunk = s.recv(16384)
                if not chunk:
                    break
                got += chunk
                time.sleep(0.001)  # a slow reader: the server is mid-answer for a while
            s.close()
            head, _, body = got.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")]
            if not head.startswith(b"HTTP/1.") or not length or len(body) != length[0]:
                report("http_loop", "SHORT", None, time.monotonic(), t_last_ok, total,
                       f"{len(body)} of {length} body bytes")
                return
        except OSError as e:
            report("http_loop", name_of(e), name_of(e), time.monotonic(), t_last_ok, total, str(e))
            return
        t_last_ok = time.monotonic()
        total += len(body)
        rounds += 1
        if rounds == 1:
            ready("http_loop")
    report("http_loop", None, None, None, t_last_ok, total)


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    {"file": mode_file, "tcp": mode_tcp, "serve": mode_serve, "echo_server": mode_echo_server,
     "http_loop": mode_http_loop}[mode](*args)


if __name__ == "__main__":
    main()
