#!/usr/bin/env python3
# ws_portforward.py: a minimal pods/portforward WebSocket client (python3 has no websocket module),
# used by the kube_apiserver integration test. Handshake written out by hand; frames per RFC 6455.
# Usage: ws_portforward.py URL TOKEN CAFILE NS POD PORT PAYLOAD [--protocols p1,p2] [--expect-error]
# Prints JSON: {"protocol":..,"status":..,"port_frames":[[ch,port]..],"data":"<first 4 KiB>","data_len":N,"error":"..","closed":true}
import base64, json, os, socket, ssl, struct, sys, urllib.parse

def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf

fin_of_last = [True]


def read_frame(s):
    h = recv_exact(s, 2)
    fin_of_last[0] = bool(h[0] & 0x80)
    opcode = h[0] & 0x0F
    length = h[1] & 0x7F
    if length == 126:
        length = struct.unpack(">H", recv_exact(s, 2))[0]
    elif length == 127:
        length = struct.unpack(">Q", recv_exact(s, 8))[0]
    if h[1] & 0x80:
        raise ValueError("server frames must not be masked")
    return opcode, recv_exact(s, length)

def send_frame(s, payload, opcode=2):
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

def main():
    args = sys.argv[1:]
    protocols = "v4.channel.k8s.io,v3.channel.k8s.io,v2.channel.k8s.io,channel.k8s.io"
    if "--protocols" in args:
        i = args.index("--protocols")
        protocols = args[i + 1]
        del args[i:i + 2]
    url, token, cafile, ns, pod, port, payload = args[:7]
    u = urllib.parse.urlparse(url)
    ctx = ssl.create_default_context(cafile=cafile)
    raw = socket.create_connection((u.hostname, u.port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname=u.hostname)
    key = base64.b64encode(os.urandom(16)).decode()
    path = f"/api/v1/namespaces/{ns}/pods/{pod}/portforward?ports={port}"
    req = (f"GET {path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocols}\r\n"
           f"Authorization: Bearer {token}\r\n\r\n")
    s.sendall(req.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        c = s.recv(1)
        if not c:
            break
        head += c
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
    out = {"status": status, "protocol": headers.get("sec-websocket-protocol", ""), "port_frames": [], "data": "", "error": "", "closed": False}
    if status != 101:
        body = b""
        try:
            n = int(headers.get("content-length", "0"))
            body = recv_exact(s, n)
        except Exception:
            pass
        out["body"] = body.decode(errors="replace")
        print(json.dumps(out))
        return
    # The first frame of each channel carries the port.
    while len(out["port_frames"]) < 2:
        op, data = read_frame(s)
        out["port_frames"].append([data[0], data[1] | (data[2] << 8)])
    sent = b""
    if payload.startswith("@random:"):  # N random bytes in 60 KiB frames, then read the echo
        # One thread only: an SSL socket must not be read and written from two threads at once
        # (that failed now and then). N is kept small enough for the socket buffers on the way
        # back to hold the whole echo while we are still sending.
        sent = os.urandom(int(payload.split(":")[1]))
        for i in range(0, len(sent), 61440):
            send_frame(s, b"\x00" + sent[i:i + 61440])
    elif payload:
        send_frame(s, b"\x00" + payload.encode())
    raw = b""
    try:
        message = b""
        while True:
            op, data = read_frame(s)
            if op == 8:
                out["closed"] = True
                break
            if op in (9, 10):
                continue
            message += data  # op 0 continues a fragmented message
            if not fin_of_last[0]:
                continue
            if message and message[0] == 0:
                raw += message[1:]
            elif message and message[0] == 1:
                out["error"] += message[1:].decode(errors="replace")
            message = b""
    except (EOFError, ConnectionError, ssl.SSLError):
        out["closed"] = True
    out["data_len"] = len(raw)
    if sent:
        import hashlib
        out["echo_ok"] = hashlib.sha256(raw).hexdigest() == hashlib.sha256(sent).hexdigest()
    out["data"] = raw[:4096].decode(errors="replace")
    print(json.dumps(out))

main()
