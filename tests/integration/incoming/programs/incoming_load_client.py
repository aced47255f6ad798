# incoming_load_client.py: the load client of the incoming end-to-end tests, run in the harness's
# peer netns (tests/integration/incoming/incoming_load_test.cpp).
#
#   incoming_load_client.py HOST PORT CLIENTS REQUESTS EXPECTED_TAG
#
# CLIENTS threads, each with ONE http.client keep-alive connection, send REQUESTS GETs each
# (path /c<client>/r<request>) and check every answer: status 200 and the body
# "EXPECTED_TAG:/c<client>/r<request>:<sha256 of the empty body>" (incoming_app.py's answer).
# A failed request is counted, not retried. Prints ONE JSON object: total, ok, by_tag (who
# answered), failures (first 10, with the reason), connects (connections opened) and seconds.
import hashlib
import http.client
import json
import sys
import threading
import time

EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def main():
    host, port, clients, requests, want_tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    lock = threading.Lock()
    stats = {"total": 0, "ok": 0, "by_tag": {}, "failures": [], "connects": 0}
    start_barrier = threading.Barrier(clients)

    def note(ok, tag, failure=None):
        with lock:
            stats["total"] += 1
            if ok:
                stats["ok"] += 1
            stats["by_tag"][tag] = stats["by_tag"].get(tag, 0) + 1
            if failure and len(stats["failures"]) < 10:
                stats["failures"].append(failure)

    def run(c):
        conn = None
        try:
            start_barrier.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass
        for r in range(requests):
            path = f"/c{c}/r{r}"
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=20)
                    conn.connect()
                    with lock:
                        stats["connects"] += 1
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read().decode("latin-1")
                tag = body.split(":", 1)[0]
                ok = resp.status == 200 and body == f"{want_tag}:{path}:{EMPTY_SHA}"
                note(ok, tag, None if ok else f"{path}: status {resp.status} body {body[:80]!r}")
                if resp.will_close:
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - every failure is data for the test
                note(False, "error", f"{path}: {type(e).__name__}: {e}")
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats["seconds"] = round(time.monotonic() - t0, 3)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
