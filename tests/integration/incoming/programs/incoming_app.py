# incoming_app.py: the HTTP/1.1 + WebSocket server of the incoming end-to-end tests
# (tests/integration/incoming/). The same script is the LOCAL app (run under `mirrord exec` in the
# harness's laptop netns, from this file) and the POD's own server (its text passed with
# `python3 -c` into the pod, which cannot see this tree), told apart by --tag.
#
#   incoming_app.py --tag TAG --port PORT [--bind ADDR] [--record FILE]
#
# Every request is answered "TAG:PATH:SHA256(body)" with Content-Length and an X-Served-By: TAG
# header, on keep-alive connections (HTTP/1.1), bodies by Content-Length or chunked, Expect:
# 100-continue honoured. A request with "Upgrade: websocket" gets 101 (Sec-WebSocket-Accept =
# base64(sha1(key + GUID)), X-Served-By: TAG) and then every data frame is echoed back (ping ->
# pong, close -> close). With --record, one JSON line per request (method, path, version,
# lowercased headers, body length and sha256, the peer and local address the app saw) is appended
# to FILE, flushed at once (the C++ test polls it: in mirror mode this file is the only thing that
# shows the app got the traffic, its answers are dropped). "READY TAG PORT" is printed after
# listen() returned (under mirrord, listen returns after the agent confirmed the subscription);
# a failing bind/listen prints "LISTEN_FAILED TAG PORT errno=N ERROR" and exits 3.
import argparse
import base64
import hashlib
import json
import socket
import sys
import threading

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"

record_lock = threading.Lock()


def recv_exact(conn, buf, n):
    """Returns (data of n bytes, rest of buf) or (None, b"") on EOF."""
    while len(buf) < n:
        chunk = conn.recv(max(65536, n - len(buf)))
        if not chunk:
            return None, b""
        buf += chunk
    return buf[:n], buf[n:]


def recv_until(conn, buf, marker, limit=1 << 20):
    while marker not in buf:
        if len(buf) > limit:
            return None, b""
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        buf += chunk
    i = buf.index(marker) + len(marker)
    return buf[:i], buf[i:]


def unmask(payload, key):
    if not payload:
        return payload
    n = len(payload)
    full = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(full, "big")).to_bytes(n, "big")


def ws_frame(opcode, payload):
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + n.to_bytes(2, "big")
    else:
        head += bytes([127]) + n.to_bytes(8, "big")
    return head + payload


def ws_echo(conn, buf):
    """Echoes data frames (fragments reassembled) until a close frame or EOF."""
    message = b""
    message_op = 0
    while True:
        head, buf = recv_exact(conn, buf, 2)
        if head is None:
            return
        fin, opcode = head[0] & 0x80, head[0] & 0x0F
        masked, n = head[1] & 0x80, head[1] & 0x7F
        if n == 126:
            ext, buf = recv_exact(conn, buf, 2)
            if ext is None:
                return
            n = int.from_bytes(ext, "big")
        elif n == 127:
            ext, buf = recv_exact(conn, buf, 8)
            if ext is None:
                return
            n = int.from_bytes(ext, "big")
        key = b""
        if masked:
            key, buf = recv_exact(conn, buf, 4)
            if key is None:
                return
        payload, buf = recv_exact(conn, buf, n)
        if payload is None:
            return
        if masked:
            payload = unmask(payload, key)
        if opcode == 0x8:  # close
            conn.sendall(ws_frame(0x8, payload[:2]))
            return
        if opcode == 0x9:  # ping
            conn.sendall(ws_frame(0xA, payload))
            continue
        if opcode == 0xA:  # pong
            continue
        if opcode != 0:
            message_op = opcode
            message = payload
        else:
            message += payload
        if fin:
            conn.sendall(ws_frame(message_op, message))
            message = b""


def read_body(conn, buf, headers):
    """Returns (sha256 hex, length, rest of buf) or (None, 0, b"") on EOF."""
    h = hashlib.sha256()
    total = 0
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            line, buf = recv_until(conn, buf, b"\r\n")
            if line is None:
                return None, 0, b""
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                _, buf = recv_until(conn, buf, b"\r\n")  # trailers end (no trailers expected)
                return h.hexdigest(), total, buf
            data, buf = recv_exact(conn, buf, size + 2)
            if data is None:
                return None, 0, b""
            h.update(data[:size])
            total += size
    remaining = int(headers.get("content-length", "0") or "0")
    if len(buf) >= remaining:
        h.update(buf[:remaining])
        return h.hexdigest(), remaining, buf[remaining:]
    h.update(buf)
    total = len(buf)
    buf = b""
    while total < remaining:
        chunk = conn.recv(min(1 << 20, remaining - total))
        if not chunk:
            return None, 0, b""
        h.update(chunk)
        total += len(chunk)
    return h.hexdigest(), total, b""


def record(args, entry):
    if not args.record:
        return
    line = json.dumps(entry, sort_keys=True) + "\n"
    with record_lock:
        with open(args.record, "a") as f:
            f.write(line)
            f.flush()


def serve_connection(args, conn, peer):
    try:
        local = conn.getsockname()
        buf = b""
        while True:
            head, buf = recv_until(conn, buf, b"\r\n\r\n")
            if head is None:
                return
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            method, path, version = parts
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            if headers.get("expect", "").lower() == "100-continue":
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            sha, length, buf = read_body(conn, buf, headers)
            if sha is None:
                return
            entry = {"tag": args.tag, "method": method, "path": path, "version": version,
                     "headers": headers, "body_len": length, "body_sha256": sha,
                     "peer": [peer[0], peer[1]], "local": [local[0], local[1]]}
            if headers.get("upgrade", "").lower() == "websocket":
                key = headers.get("sec-websocket-key", "").encode()
                accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
                entry["websocket"] = True
                record(args, entry)
                conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n"
                              "X-Served-By: " + args.tag + "\r\n\r\n").encode())
                ws_echo(conn, buf)
                return
            record(args, entry)
            body = f"{args.tag}:{path}:{sha}".encode()
            close = version == "HTTP/1.0" or headers.get("connection", "").lower() == "close"
            conn.sendall((f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                          f"X-Served-By: {args.tag}\r\n" + ("Connection: close\r\n" if close else "") +
                          "\r\n").encode() + body)
            if close:
                return
    except OSError:
        pass
    finally:
        conn.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tag", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--record")
    args = p.parse_args()
    family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET
    srv = socket.socket(family, socket.SOCK_STREAM)
    try:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((args.bind, args.port))
        srv.listen(256)
    except OSError as e:
        print(f"LISTEN_FAILED {args.tag} {args.port} errno={e.errno} {e}", flush=True)
        sys.exit(3)
    print(f"READY {args.tag} {args.port}", flush=True)
    while True:
        conn, peer = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve_connection, args=(args, conn, peer), daemon=True).start()


if __name__ == "__main__":
    main()
