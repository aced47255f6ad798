# incoming_ws_client.py: the WebSocket client of the incoming end-to-end tests, run in the
# harness's peer netns against the pod's IP (tests/integration/incoming/incoming_ws_test.cpp).
#
#   incoming_ws_client.py HOST PORT PATH [--header "Name: value"]...
#
# Sends an HTTP/1.1 upgrade request (random Sec-WebSocket-Key), checks the 101 answer's
# Sec-WebSocket-Accept = base64(sha1(key + GUID)), then sends three masked messages — a short text,
# a 70 000-byte binary (16-bit length form) and a 1 MiB binary (64-bit length form) — and reads
# the echo of each; then a close frame. Prints ONE JSON object: status line, X-Served-By,
# accept_ok, and per message whether the echo was byte-identical (sha256 compared).
import base64
import hashlib
import json
import os
import socket
import sys

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"


def recv_exact(s, buf, n):
    while len(buf) < n:
        chunk = s.recv(max(65536, n - len(buf)))
        if not chunk:
            raise ConnectionError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return buf[:n], buf[n:]


def mask(payload, key):
    if not payload:
        return payload
    n = len(payload)
    full = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(full, "big")).to_bytes(n, "big")


def frame(opcode, payload):
    key = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + key + mask(payload, key)


def read_frame(s, buf):
    head, buf = recv_exact(s, buf, 2)
    opcode, n = head[0] & 0x0F, head[1] & 0x7F
    if n == 126:
        ext, buf = recv_exact(s, buf, 2)
        n = int.from_bytes(ext, "big")
    elif n == 127:
        ext, buf = recv_exact(s, buf, 8)
        n = int.from_bytes(ext, "big")
    if head[1] & 0x80:
        key, buf = recv_exact(s, buf, 4)
        payload, buf = recv_exact(s, buf, n)
        payload = mask(payload, key)
    else:
        payload, buf = recv_exact(s, buf, n)
    return opcode, payload, buf


def main():
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    extra = []
    i = 4
    while i < len(sys.argv):
        if sys.argv[i] == "--header":
            extra.append(sys.argv[i + 1])
            i += 2
        else:
            raise SystemExit(f"unknown argument {sys.argv[i]}")
    out = {}
    s = socket.create_connection((host, port), timeout=20)
    key = base64.b64encode(os.urandom(16))
    req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n")
    for h in extra:
        req += h + "\r\n"
    s.sendall((req + "\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    out["status"] = lines[0]
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    out["served_by"] = headers.get("x-served-by", "")
    want = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
    out["accept_ok"] = headers.get("sec-websocket-accept", "") == want
    if " 101 " not in lines[0] + " ":
        print(json.dumps(out))
        return
    messages = [(0x1, b"hello through mirrord"), (0x2, os.urandom(70000)), (0x2, os.urandom(1 << 20))]
    echoes = []
    try:
        for opcode, payload in messages:
            s.sendall(frame(opcode, payload))
            got_op, got, buf = read_frame(s, buf)
            echoes.append({"len": len(got), "opcode": got_op,
                           "same": got_op == opcode and hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()})
        s.sendall(frame(0x8, (1000).to_bytes(2, "big")))
        op, _, buf = read_frame(s, buf)
        out["close_echoed"] = op == 0x8
    except (OSError, ConnectionError) as e:
        out["error"] = f"{type(e).__name__}: {e}"
    out["echoes"] = echoes
    s.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
