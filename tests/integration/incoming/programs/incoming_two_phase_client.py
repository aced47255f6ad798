# incoming_two_phase_client.py: a client that opens ONE keep-alive connection BEFORE a mirrord
# session subscribes the port, and uses it again after (tests/integration/incoming/): what happens
# to connections that were already open (mirror: joined at the next request; steal: reset by
# flush_connections so the client reconnects and is stolen).
#
#   incoming_two_phase_client.py HOST PORT GO_FILE
#
# GET /phase/1 on the connection, print "PHASE1_DONE"; wait (20 s at most) until GO_FILE exists;
# GET /phase/2 on the SAME connection; then GET /phase/3 on a new connection. Prints ONE JSON
# object at the end: {"phase1": BODY | {"error"}, "phase2": ..., "phase3": ...}.
import http.client
import json
import os
import sys
import time


def get(conn, path):
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.read().decode("latin-1")
    except Exception as e:  # noqa: BLE001 - the failure is what the test looks at
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    host, port, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    out = {}
    conn = http.client.HTTPConnection(host, port, timeout=10)
    out["phase1"] = get(conn, "/phase/1")
    print("PHASE1_DONE", flush=True)
    deadline = time.monotonic() + 20
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.02)
    conn.auto_open = 0  # never silently reconnect: phase 2 must use the first connection
    out["phase2"] = get(conn, "/phase/2")
    conn.close()
    fresh = http.client.HTTPConnection(host, port, timeout=10)
    out["phase3"] = get(fresh, "/phase/3")
    fresh.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
