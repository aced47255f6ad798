# fl_slow_client.py: the cluster-side client of the steal cut tests (faults_link), run in the peer
# netns, so the app stays inside one request for up to HOLD seconds. MODE
#   read-body     POSTs with a Content-Length of 64 MiB, sends the first 1 MiB, then sends nothing
#                 more; prints "SENT 1048576";
#   write-answer  GETs, then reads the (huge) answer slowly: 64 KiB every 50 ms;
# and prints "CLOSED why" when the connection ends (eof, reset...) or HOLD runs out.
import socket
import sys
import time

host, port, hold = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
mode = sys.argv[4] if len(sys.argv) > 4 else "read-body"
s = socket.create_connection((host, port), timeout=10)
if mode == "write-answer":
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"GET /download HTTP/1.1\r\nHost: pod\r\n\r\n")
    end = time.monotonic() + hold
    s.settimeout(hold)
    why = "hold-ended"
    try:
        while time.monotonic() < end:
            data = s.recv(65536)
            if not data:
                why = "eof"
                break
            time.sleep(0.05)
    except socket.timeout:
        pass
    except OSError as e:
        why = str(e)
    print("CLOSED", why, flush=True)
    sys.exit(0)
s.sendall(b"POST /upload HTTP/1.1\r\nHost: pod\r\nContent-Length: %d\r\n\r\n" % (64 << 20))
s.sendall(b"x" * (1 << 20))
print("SENT", 1 << 20, flush=True)
s.settimeout(hold)
try:
    data = s.recv(4096)
    print("CLOSED", "eof" if not data else "answer", flush=True)
except socket.timeout:
    print("CLOSED hold-ended", flush=True)
except OSError as e:
    print("CLOSED", e, flush=True)
