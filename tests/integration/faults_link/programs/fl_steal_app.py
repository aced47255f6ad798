# fl_steal_app.py: the local app of the "cut the agent link" steal tests (faults_link). Listens on
# PORT (stolen from the pod under `mirrord exec --steal`), takes ONE request and, with MODE
#   read-body     reads its body (Content-Length, large),
#   write-answer  answers it with a 256 MiB body, written in 64 KiB sends,
# and reports how that ended:
#   READY PORT                        listening
#   IN-REQUEST BYTES                  once BYTES >= 256 KiB of the body were read / written
#   RESULT errno=NAME bytes=N t=MONO  a recv/send failed (NAME = errno name, MONO = time.monotonic())
#   RESULT eof bytes=N t=MONO         the stream ended before the whole body (read-body)
#   RESULT complete bytes=N t=MONO    the whole body came / went
import errno
import socket
import sys
import time

port = int(sys.argv[1])
mode = sys.argv[2] if len(sys.argv) > 2 else "read-body"
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", port))
srv.listen(8)
print("READY", port, flush=True)
conn, _ = srv.accept()
head = b""
while b"\r\n\r\n" not in head:
    chunk = conn.recv(4096)
    if not chunk:
        print("RESULT eof-in-headers bytes=0 t=%.6f" % time.monotonic(), flush=True)
        sys.exit(0)
    head += chunk
headers, body = head.split(b"\r\n\r\n", 1)
length = 0
for line in headers.split(b"\r\n")[1:]:
    name, _, value = line.partition(b":")
    if name.strip().lower() == b"content-length":
        length = int(value.strip())
got = len(body)
announced = False
result = None
if mode == "write-answer":
    total = 256 << 20
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
    block = b"y" * 65536
    got = 0
    while got < total:
        try:
            got += conn.send(block)
        except OSError as e:
            result = "errno=%s" % errno.errorcode.get(e.errno, str(e.errno))
            break
        if not announced and got >= 256 * 1024:
            announced = True
            print("IN-REQUEST", got, flush=True)
    length = 0
while got < length:
    try:
        chunk = conn.recv(65536)
    except OSError as e:
        result = "errno=%s" % errno.errorcode.get(e.errno, str(e.errno))
        break
    if not chunk:
        result = "eof"
        break
    got += len(chunk)
    if not announced and got >= 256 * 1024:
        announced = True
        print("IN-REQUEST", got, flush=True)
print("RESULT %s bytes=%d t=%.6f" % (result or "complete", got, time.monotonic()), flush=True)
