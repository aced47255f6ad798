#!/usr/bin/env python3
# checks.py: HTTP-level checks of fake-kube-apiserver with python's own client (http.client + ssl),
# an independent client for the kube_apiserver integration test. Usage:
#   checks.py CASE URL TOKEN CAFILE [ARGS...]
# Prints what it checked; exits 0 when every assertion held, 1 with the failed assertion otherwise.
import http.client, json, os, socket, ssl, subprocess, sys, threading, time, urllib.parse

CASE, URL, TOKEN, CAFILE = sys.argv[1:5]
EXTRA = sys.argv[5:]
U = urllib.parse.urlparse(URL)
CTX = ssl.create_default_context(cafile=CAFILE)
HERE = os.path.dirname(os.path.abspath(__file__))


def conn():
    return http.client.HTTPSConnection(U.hostname, U.port, context=CTX, timeout=20)


def call(method, path, body=None, content_type="application/json", token=TOKEN):
    c = conn()
    headers = {}
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    data = None
    if body is not None:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        headers["Content-Type"] = content_type
    c.request(method, path, body=data, headers=headers)
    r = c.getresponse()
    raw = r.read()
    c.close()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return r.status, parsed


def check(cond, what, detail=""):
    if not cond:
        print("FAILED: " + what + (" -- " + str(detail)[:2000] if detail != "" else ""))
        sys.exit(1)
    print("ok: " + what)


def expect_status(got, code, reason, message=None, what=""):
    status, body = got
    check(status == code and isinstance(body, dict) and body.get("kind") == "Status" and body.get("code") == code
          and body.get("reason") == reason and body.get("status") == "Failure", f"{what}: {code} {reason}", got)
    if message is not None:
        check(body.get("message") == message, f"{what}: message is {message!r}", body.get("message"))


def pod(name, labels=None, **spec):
    s = {"containers": [{"name": "c", "image": "mirrord-native/agent:1", "command": ["sleep-forever"]}]}
    s.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}}, "spec": s}


class Watch:
    """A watch read line by line on its own thread."""

    def __init__(self, path):
        self.events = []
        self.done = threading.Event()
        self.c = conn()
        self.c.request("GET", path, headers={"Authorization": "Bearer " + TOKEN})
        self.r = self.c.getresponse()
        self.status = self.r.status
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        try:
            while True:
                line = self.r.readline()
                if not line:
                    break
                self.events.append(json.loads(line))
        except Exception as e:  # the stream ends when the server ends it or we close it
            self.error = e
        self.done.set()

    def wait_for(self, n, timeout=5):
        end = time.time() + timeout
        while len(self.events) < n and time.time() < end and not self.done.is_set():
            time.sleep(0.02)
        return self.events

    def close(self):
        try:
            self.c.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.c.close()


def case_errors():
    expect_status(call("GET", "/api/v1/namespaces/default/pods", token=None), 401, "Unauthorized", "Unauthorized", "no token")
    expect_status(call("GET", "/api/v1/namespaces/default/pods", token="wrong"), 401, "Unauthorized", None, "wrong token")
    expect_status(call("GET", "/api/v1/namespaces/default/pods/nope"), 404, "NotFound", 'pods "nope" not found', "missing pod")
    status, body = call("GET", "/api/v1/namespaces/default/pods/nope")
    check(body["details"] == {"name": "nope", "kind": "pods"}, "NotFound details name+kind", body)
    expect_status(call("GET", "/apis/batch/v1/namespaces/default/jobs/nope"), 404, "NotFound", 'jobs.batch "nope" not found', "missing job")
    expect_status(call("GET", "/api/v1/namespaces/default/widgets"), 404, "NotFound", "the server could not find the requested resource", "unknown resource")
    expect_status(call("GET", "/apis/nope.io/v1/things"), 404, "NotFound", "the server could not find the requested resource", "unknown group")
    expect_status(call("POST", "/api/v1/namespaces/default/pods", "{not json"), 400, "BadRequest", None, "bad JSON")
    expect_status(call("POST", "/api/v1/namespaces/default/pods", [1, 2]), 400, "BadRequest", None, "JSON array body")
    expect_status(call("POST", "/api/v1/namespaces/default/pods", {"metadata": {"name": "x"}, "spec": {}}), 422, "Invalid", None, "pod without containers")
    expect_status(call("POST", "/api/v1/namespaces/default/pods", {"metadata": {"name": "Bad_Name"}, "spec": pod("a")["spec"]}), 422, "Invalid", None, "bad name")
    expect_status(call("POST", "/api/v1/namespaces/nowhere/pods", pod("x")), 404, "NotFound", 'namespaces "nowhere" not found', "missing namespace")
    expect_status(call("POST", "/apis/apps/v1/namespaces/default/deployments", {"metadata": {"name": "web"}}), 409, "AlreadyExists",
                  'deployments.apps "web" already exists', "duplicate")
    job = {"metadata": {"name": "j"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i", "command": ["x"]}]}}}}
    expect_status(call("POST", "/apis/batch/v1/namespaces/locked/jobs", job), 403, "Forbidden",
                  'jobs.batch is forbidden: User "fake" cannot create resource "jobs" in API group "batch" in the namespace "locked"', "RBAC deny")
    bad = pod("psa", hostPID=True, volumes=[{"name": "host-run", "hostPath": {"path": "/run"}}, {"name": "host-var", "hostPath": {"path": "/var"}}])
    expect_status(call("POST", "/api/v1/namespaces/secure/pods", bad), 403, "Forbidden",
                  'pods "psa" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostPID=true), hostPath volumes (volumes "host-run", "host-var")',
                  "Pod Security baseline")
    expect_status(call("PATCH", "/api/v1/namespaces/default/pods/web", {"a": 1}, "application/yaml"), 415, "UnsupportedMediaType", None, "unknown patch type")
    expect_status(call("PUT", "/api/v1/namespaces/default/pods", pod("x")), 405, "MethodNotAllowed", None, "PUT on a collection")
    status, body = call("GET", "/api/v1/namespaces/default/pods/web/log?container=nope")
    check(status == 400 and body["message"] == "container nope is not valid for pod web", "log of an unknown container", body)


def case_crud():
    status, created = call("POST", "/api/v1/namespaces/default/pods", pod("", {"app": "gen"}) | {"metadata": {"generateName": "gen-", "labels": {"app": "gen"}}})
    check(status == 201 and created["metadata"]["name"].startswith("gen-") and len(created["metadata"]["name"]) == 9, "generateName", created)
    meta = created["metadata"]
    check(meta.get("uid") and meta.get("creationTimestamp") and meta.get("resourceVersion", "").isdigit(), "uid/creationTimestamp/resourceVersion", meta)
    name = meta["name"]
    status, body = call("GET", "/api/v1/namespaces/default/pods?labelSelector=app%3Dgen")
    check(status == 200 and body["kind"] == "PodList" and [p["metadata"]["name"] for p in body["items"]] == [name], "labelSelector =", body)
    for sel, want in [("app+in+(gen,x)", [name]), ("app+notin+(gen)", None), ("app!%3Dgen", None), ("!app", None), ("app", "contains")]:
        status, body = call("GET", "/api/v1/namespaces/default/pods?labelSelector=" + sel)
        names = [p["metadata"]["name"] for p in body["items"]]
        if want is None:
            check(name not in names, "labelSelector " + sel + " excludes", names)
        elif want == "contains":
            check(name in names and "web" in names, "labelSelector " + sel, names)
        else:
            check(names == want, "labelSelector " + sel, names)
    status, body = call("GET", "/api/v1/pods?fieldSelector=metadata.name%3D" + name)
    check([p["metadata"]["name"] for p in body["items"]] == [name], "fieldSelector metadata.name across namespaces", body)
    status, body = call("GET", "/api/v1/namespaces/default/pods?fieldSelector=status.phase%3DRunning")
    check(all(p["status"]["phase"] == "Running" for p in body["items"]) and any(p["metadata"]["name"] == "web" for p in body["items"]), "fieldSelector status.phase", body)
    status, body = call("GET", "/api/v1/namespaces/default/pods?labelSelector=a%3D%3D(")
    check(status == 400 and body["reason"] == "BadRequest", "bad selector is 400", body)
    # Patches.
    status, p = call("PATCH", f"/api/v1/namespaces/default/pods/{name}", {"metadata": {"labels": {"extra": "1"}}}, "application/merge-patch+json")
    check(status == 200 and p["metadata"]["labels"] == {"app": "gen", "extra": "1"} and int(p["metadata"]["resourceVersion"]) > int(meta["resourceVersion"]), "merge patch", p)
    status, p = call("PATCH", f"/api/v1/namespaces/default/pods/{name}",
                     {"spec": {"containers": [{"name": "side", "image": "mirrord-native/agent:2"}]}}, "application/strategic-merge-patch+json")
    check([c["name"] for c in p["spec"]["containers"]] == ["c", "side"], "strategic merge patch merges lists by name", p["spec"])
    status, p = call("PATCH", f"/api/v1/namespaces/default/pods/{name}", [{"op": "replace", "path": "/metadata/labels/extra", "value": "2"}], "application/json-patch+json")
    check(status == 200 and p["metadata"]["labels"]["extra"] == "2", "json patch", p)
    status, body = call("PATCH", f"/api/v1/namespaces/default/pods/{name}", [{"op": "test", "path": "/metadata/labels/extra", "value": "9"}], "application/json-patch+json")
    check(status == 422, "failed json patch test op is 422", body)
    # PUT with a stale resourceVersion.
    stale = dict(p)
    stale["metadata"] = dict(p["metadata"], resourceVersion=meta["resourceVersion"])
    expect_status(call("PUT", f"/api/v1/namespaces/default/pods/{name}", stale), 409, "Conflict", None, "PUT with a stale resourceVersion")
    status, put = call("PUT", f"/api/v1/namespaces/default/pods/{name}", p)
    check(status == 200 and put["metadata"]["uid"] == meta["uid"], "PUT with the current resourceVersion", put)
    status, gone = call("DELETE", f"/api/v1/namespaces/default/pods/{name}")
    check(status == 200 and gone["metadata"]["name"] == name, "DELETE returns the object", gone)
    expect_status(call("DELETE", f"/api/v1/namespaces/default/pods/{name}"), 404, "NotFound", f'pods "{name}" not found', "DELETE twice")
    # Discovery.
    status, body = call("GET", "/apis/argoproj.io/v1alpha1")
    check(status == 200 and any(r["name"] == "rollouts" for r in body["resources"]), "discovery of rollouts", body)
    status, body = call("GET", "/api/v1")
    check(any(r["name"] == "pods/portforward" for r in body["resources"]), "discovery of pods/portforward", "")
    status, body = call("GET", "/version")
    check(status == 200 and body["major"] == "1", "/version", body)


def case_watch():
    status, lst = call("GET", "/api/v1/namespaces/default/pods")
    rv = lst["metadata"]["resourceVersion"]
    w = Watch(f"/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}&labelSelector=app%3Dwatched&timeoutSeconds=10")
    check(w.status == 200, "watch answers 200", w.status)
    call("POST", "/api/v1/namespaces/default/pods", pod("other", {"app": "other"}))
    call("POST", "/api/v1/namespaces/default/pods", pod("w1", {"app": "watched"}))
    call("PATCH", "/api/v1/namespaces/default/pods/w1", {"metadata": {"annotations": {"a": "b"}}}, "application/merge-patch+json")
    call("PATCH", "/api/v1/namespaces/default/pods/w1", {"metadata": {"labels": {"app": "gone"}}}, "application/merge-patch+json")
    call("PATCH", "/api/v1/namespaces/default/pods/w1", {"metadata": {"labels": {"app": "watched"}}}, "application/merge-patch+json")
    call("DELETE", "/api/v1/namespaces/default/pods/w1")
    w.wait_for(100, timeout=1.5)
    events = w.events
    w.close()
    got = []
    for e in events:  # the kubelet's own status updates add MODIFIED events: collapse repeats
        item = (e["type"], e["object"]["metadata"]["name"])
        if not got or got[-1] != item or item[0] != "MODIFIED":
            got.append(item)
    check(got == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1"), ("ADDED", "w1"), ("DELETED", "w1")],
          "watch with labelSelector: ADDED, MODIFIED, leaving = DELETED, entering = ADDED, DELETED", got)
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    check(rvs == sorted(rvs) and rvs[0] > int(rv), "resourceVersions grow", rvs)
    # Resume from a resourceVersion: replays what came after it.
    w2 = Watch(f"/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}&fieldSelector=metadata.name%3Dother&timeoutSeconds=1")
    ev2 = w2.wait_for(1)
    check([(e["type"], e["object"]["metadata"]["name"]) for e in ev2][:1] == [("ADDED", "other")], "resume replays history", ev2)
    t0 = time.time()
    w2.done.wait(5)
    check(w2.done.is_set() and time.time() - t0 < 3, "timeoutSeconds ends the stream", time.time() - t0)
    # No resourceVersion: the current objects first.
    w3 = Watch("/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=1")
    w3.done.wait(5)
    check(any(e["type"] == "ADDED" and e["object"]["metadata"]["name"] == "web" for e in w3.events), "watch without resourceVersion lists first", w3.events)
    # /fake/objects flips a status and watches see it.
    w4 = Watch("/api/v1/namespaces/default/pods?watch=true&fieldSelector=metadata.name%3Dother&timeoutSeconds=5&resourceVersion=" +
               call("GET", "/api/v1/namespaces/default/pods")[1]["metadata"]["resourceVersion"])
    status, other = call("GET", "/api/v1/namespaces/default/pods/other")
    other["status"] = {"phase": "Failed"}
    status, body = call("POST", "/fake/objects", other)
    check(status == 200 and body["status"]["phase"] == "Failed", "/fake/objects replaces", body)
    ev4 = w4.wait_for(1)
    w4.close()
    check([(e["type"], e["object"]["status"]["phase"]) for e in ev4] == [("MODIFIED", "Failed")], "watch sees /fake/objects", ev4)
    # 410 after compaction.
    status, body = call("POST", "/fake/compact", {})
    check(status == 200, "compact", body)
    w5 = Watch(f"/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}")
    w5.done.wait(5)
    check(len(w5.events) == 1 and w5.events[0]["type"] == "ERROR" and w5.events[0]["object"]["code"] == 410
          and w5.events[0]["object"]["message"].startswith("too old resource version: " + rv), "old resourceVersion: ERROR event with a 410 Status", w5.events)
    call("DELETE", "/api/v1/namespaces/default/pods/other")


def case_control():
    call("DELETE", "/fake/requests")
    status, body = call("POST", "/fake/faults", {"rules": [{"method": "GET", "path_regex": "/pods/web$", "status": 503, "times": 2}]})
    check(status == 200 and body["rules"][0]["times"] == 2, "fault armed", body)
    codes = [call("GET", "/api/v1/namespaces/default/pods/web")[0] for _ in range(3)]
    check(codes == [503, 503, 200], "fault answers twice then clears", codes)
    status, body = call("POST", "/fake/faults", {"rules": [{"path_regex": "/deployments", "delay_ms": 300}]})
    t0 = time.time()
    status, body = call("GET", "/apis/apps/v1/namespaces/default/deployments")
    check(status == 200 and time.time() - t0 >= 0.3, "delay fault", time.time() - t0)
    expect_status(call("POST", "/fake/faults", {"rules": [{"path_regex": "("}]}), 400, "BadRequest", None, "bad fault regex")
    call("POST", "/fake/faults", {"rules": [{"method": "GET", "path_regex": "/pods\\?.*watch=true", "status": 429, "times": 1}]})
    check(call("GET", "/api/v1/namespaces/default/pods")[0] == 200, "query fault leaves other queries alone")
    status, body = call("GET", "/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=1")
    check(status == 429 and body["reason"] == "TooManyRequests", "fault rule matching the query", body)
    call("PATCH", "/api/v1/namespaces/default/pods/web", {"metadata": {"labels": {"x": "y"}}}, "application/merge-patch+json")
    status, log = call("GET", "/fake/requests")
    check(status == 200 and isinstance(log, list), "request log", log)
    check([r["status"] for r in log[:3]] == [503, 503, 200] and any(r["status"] == 429 and r["query"] == "watch=true&timeoutSeconds=1" for r in log) and log[0]["method"] == "GET" and log[0]["path"] == "/api/v1/namespaces/default/pods/web",
          "request log has method, path, status", log[:3])
    patch = [r for r in log if r["method"] == "PATCH"][0]
    check(patch["content_type"] == "application/merge-patch+json" and patch["body"] == {"metadata": {"labels": {"x": "y"}}} and patch["ws"] is False,
          "request log has content_type and JSON body", patch)
    check("Bearer" not in json.dumps(log) and TOKEN not in json.dumps(log), "request log has no auth header", "")
    check(not any(r["path"].startswith("/fake/") for r in log), "request log leaves /fake/ out", "")


def ws(pod_name, port, payload="", protocols=None, ns="default"):
    cmd = [sys.executable, os.path.join(HERE, "ws_portforward.py"), URL, TOKEN, CAFILE, ns, pod_name, str(port), payload]
    if protocols:
        cmd += ["--protocols", protocols]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        check(False, "ws_portforward.py ran", out.stderr)
    return json.loads(out.stdout)


def case_portforward():
    r = ws("web", 80, "GET /hello.txt HTTP/1.0\r\n\r\n")
    check(r["status"] == 101 and r["protocol"] == "v4.channel.k8s.io", "upgrade with v4.channel.k8s.io", r)
    check(r["port_frames"] == [[0, 80], [1, 80]], "first frame of each channel carries the port", r)
    check(r["data"].startswith("HTTP/1.0 200") and "hello from the pod" in r["data"], "data reaches 127.0.0.1:80 in the pod's netns", r)
    check(r["closed"] and r["error"] == "", "pod side closing closes the WebSocket", r)
    r = ws("web", 80, "GET /big.bin HTTP/1.0\r\n\r\n")
    length = int([l for l in r["data"].split("\r\n") if l.lower().startswith("content-length:")][0].split(":")[1])
    head_len = len(r["data"].split("\r\n\r\n")[0]) + 4
    check(length == 3 * 1024 * 1024 and r["data_len"] == head_len + length, "3 MiB through the port-forward, every byte", (length, r["data_len"]))
    if EXTRA:  # an echo server in the pod on this port, closing after 512 KiB
        r = ws("web", int(EXTRA[0]), "@random:524288")
        check(r.get("echo_ok") is True and r["data_len"] == 524288 and r["error"] == "", "512 KiB client -> pod -> client through the port-forward", r.get("data_len"))
    r = ws("web", 81, "x")
    check(r["error"].startswith("an error occurred forwarding 81 -> 81: error forwarding port 81 to pod ") and
          r["error"].endswith("dial tcp4 127.0.0.1:81: connect: connection refused"), "dial failure on the error channel", r)
    r = ws("web", 80, "GET / HTTP/1.0\r\n\r\n", protocols="portforward.k8s.io,channel.k8s.io")
    check(r["protocol"] == "channel.k8s.io", "subprotocol preference among those offered", r)
    r = ws("nope", 80, "")
    check(r["status"] == 404 and json.loads(r["body"])["message"] == 'pods "nope" not found', "port-forward to a missing pod is 404", r)
    # drop-portforwards: a held-open WebSocket is cut without a close frame.
    s = open_ws("web", 80)
    status, body = call("POST", "/fake/drop-portforwards", {})
    check(status == 200 and body["dropped"] >= 1, "drop-portforwards counts", body)
    try:
        s.settimeout(5)
        data = s.recv(100)
        check(data == b"", "dropped: EOF without a close frame", data)
    except (ConnectionError, ssl.SSLError) as e:
        print("ok: dropped (" + type(e).__name__ + ")")
    status, log = call("GET", "/fake/requests")
    check(any(r["ws"] and r["path"].endswith("/portforward") and r["status"] == 101 for r in log), "request log marks ws requests", "")


def open_ws(pod_name, port, ns="default"):
    import base64
    raw = socket.create_connection((U.hostname, U.port), timeout=10)
    s = CTX.wrap_socket(raw, server_hostname=U.hostname)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /api/v1/namespaces/{ns}/pods/{pod_name}/portforward?ports={port} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"Sec-WebSocket-Protocol: v4.channel.k8s.io\r\nAuthorization: Bearer {TOKEN}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    check(b" 101 " in head.split(b"\r\n")[0], "held WebSocket upgraded", head)
    # Two port frames of 5 bytes each (2 header + 3 payload).
    got = b""
    while len(got) < 10:
        got += s.recv(10 - len(got))
    return s


def wait_pod(name, cond, what, timeout=10, ns="default"):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        status, last = call("GET", f"/api/v1/namespaces/{ns}/pods/{name}")
        if status == 200 and cond(last):
            check(True, what)
            return last
        time.sleep(0.05)
    check(False, what, last)


def job_pods(job, ns="default"):
    status, body = call("GET", f"/api/v1/namespaces/{ns}/pods?labelSelector=batch.kubernetes.io%2Fjob-name%3D{job}")
    return body["items"]


def agent_job(name, args, ns="default", image="mirrord-native/agent:test", ttl_after=None, **spec_extra):
    spec = {"restartPolicy": "Never", "containers": [{"name": "mirrord-agent", "image": image, "command": ["/mirrord-agent"], "args": args,
                                                      "env": [{"name": "MIRRORD_AGENT_TOKEN", "value": "0123456789abcdef0123456789abcdef"},
                                                              {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}
    spec.update(spec_extra)
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": {"app": "mirrord"}}, "spec": spec}}}
    if ttl_after is not None:
        job["spec"]["ttlSecondsAfterFinished"] = ttl_after
    return call("POST", f"/apis/batch/v1/namespaces/{ns}/jobs", job)


def follow_log_until(ns, pod_name, text, timeout=10, container=None):
    c = conn()
    q = "?follow=true" + (f"&container={container}" if container else "")
    c.request("GET", f"/api/v1/namespaces/{ns}/pods/{pod_name}/log{q}", headers={"Authorization": "Bearer " + TOKEN})
    r = c.getresponse()
    check(r.status == 200, f"log follow of {pod_name} answers 200", r.status)
    c.sock.settimeout(timeout)
    seen = ""
    end = time.time() + timeout
    while time.time() < end:
        line = r.readline().decode(errors="replace")
        if not line:
            break
        seen += line
        if text in line:
            c.close()
            return seen
    c.close()
    check(False, f"log of {pod_name} shows {text!r}", seen)


def case_kubelet():
    port = int(EXTRA[0]) if EXTRA else 31234
    status, job = agent_job("agent-a", ["--listen", f"127.0.0.1:{port}", "--ttl", "2", "--log-level", "info"], ttl_after=1)
    check(status == 201 and job["metadata"]["generation"] == 1, "Job created", job)
    uid = job["metadata"]["uid"]
    check(job["spec"]["template"]["metadata"]["labels"]["controller-uid"] == uid, "template labels carry controller-uid", job["spec"])
    end = time.time() + 5
    pods = []
    while not pods and time.time() < end:
        pods = job_pods("agent-a")
        time.sleep(0.05)
    check(len(pods) == 1, "the Job made one pod", pods)
    p = pods[0]
    name = p["metadata"]["name"]
    check(name.startswith("agent-a-") and len(name) == len("agent-a-") + 5, "pod name <job>-<5 random>", name)
    ref = p["metadata"]["ownerReferences"][0]
    check(ref["kind"] == "Job" and ref["uid"] == uid and ref["controller"] is True, "ownerReferences", ref)
    p = wait_pod(name, lambda o: o["status"]["phase"] == "Running", "agent pod Running")
    cs = p["status"]["containerStatuses"][0]
    check(cs["ready"] and "running" in cs["state"] and cs["containerID"].startswith("containerd://") and len(cs["containerID"]) == 13 + 64,
          "containerStatuses ready/running/containerID", cs)
    check(p["status"]["podIP"].startswith("10.244.") and p["spec"]["nodeName"] == "node-1", "podIP and nodeName", p["status"])
    seen = follow_log_until("default", name, "agent ready - version")
    print("agent log: " + seen.strip().replace("\n", " | ")[:300])
    # Port-forward to the agent's port inside the agent pod's netns: connects (no error frame).
    s = open_ws(name, port)
    s.settimeout(0.7)
    try:
        data = s.recv(100)
        check(data != b"" and data[2] != 1, "no error frame from a port-forward to the agent", data)
    except socket.timeout:
        print("ok: port-forward to the agent connected (no error within 0.7 s)")
    s.close()
    # The agent ends after its ttl with no client; the pod and the Job finish.
    p = wait_pod(name, lambda o: o["status"]["phase"] in ("Succeeded", "Failed"), "agent pod finished after its ttl", timeout=15)
    term = p["status"]["containerStatuses"][0]["state"]["terminated"]
    check("exitCode" in term, "state.terminated.exitCode", term)
    status, j = call("GET", "/apis/batch/v1/namespaces/default/jobs/agent-a")
    check(status == 200 and j["status"]["conditions"][0]["type"] in ("Complete", "Failed"), "Job condition", j.get("status"))
    # ttlSecondsAfterFinished: 1 s later job and pod are gone.
    end = time.time() + 5
    while time.time() < end and call("GET", "/apis/batch/v1/namespaces/default/jobs/agent-a")[0] != 404:
        time.sleep(0.1)
    check(call("GET", "/apis/batch/v1/namespaces/default/jobs/agent-a")[0] == 404, "ttlSecondsAfterFinished deleted the Job")
    check(call("GET", f"/api/v1/namespaces/default/pods/{name}")[0] == 404, "... and its pod")

    # Unschedulable.
    status, job = agent_job("agent-u", ["--ttl", "1"], nodeName="node-9")
    p = wait_pod(job_pods_wait("agent-u"), lambda o: any(c["type"] == "PodScheduled" and c["status"] == "False" and c["reason"] == "Unschedulable"
                                                         for c in o["status"].get("conditions", [])), "unschedulable pod: PodScheduled=False Unschedulable")
    check(p["status"]["phase"] == "Pending", "unschedulable pod stays Pending", p["status"])
    check(has_event(p["metadata"]["name"], "FailedScheduling"), "FailedScheduling event")
    # Image pull failure.
    status, job = agent_job("agent-i", ["--ttl", "1"], image="docker.io/library/not-allowed:1")
    pn = job_pods_wait("agent-i")
    wait_pod(pn, lambda o: o["status"].get("containerStatuses", [{}])[0].get("state", {}).get("waiting", {}).get("reason") == "ErrImagePull", "ErrImagePull")
    wait_pod(pn, lambda o: o["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff", "then ImagePullBackOff")
    check(has_event(pn, "BackOff") and has_event(pn, "Failed"), "Failed and BackOff events")
    # A command that is not mirrord-agent.
    status, job = call("POST", "/api/v1/namespaces/default/pods", {"metadata": {"name": "shell"}, "spec": {"restartPolicy": "Never", "containers": [
        {"name": "c", "image": "mirrord-native/agent:1", "command": ["/bin/sh", "-c", "true"]}]}})
    wait_pod("shell", lambda o: o["status"]["phase"] == "Failed" and o["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "RunContainerError",
             "other commands: RunContainerError")
    # Pod Security on a Job: created, no pod, FailedCreate event on the Job.
    status, job = agent_job("agent-p", ["--ttl", "1"], ns="secure", hostPID=True)
    check(status == 201, "Job in a baseline namespace is created", job)
    end = time.time() + 5
    ev = []
    while time.time() < end and not ev:
        ev = [e for e in call("GET", "/api/v1/namespaces/secure/events?fieldSelector=involvedObject.kind%3DJob,involvedObject.name%3Dagent-p")[1]["items"]
              if e["reason"] == "FailedCreate"]
        time.sleep(0.05)
    check(ev and ev[0]["type"] == "Warning" and ev[0]["message"].startswith('Error creating: pods "agent-p-') and
          'is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostPID=true)' in ev[0]["message"], "FailedCreate event", ev)
    check(job_pods("agent-p", "secure") == [], "no pod for the forbidden Job")
    # activeDeadlineSeconds: the pod is killed and the Job fails with DeadlineExceeded.
    status, job = call("POST", "/apis/batch/v1/namespaces/default/jobs", {"metadata": {"name": "agent-dl"}, "spec": {"activeDeadlineSeconds": 1, "template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "a", "image": "mirrord-native/agent:1", "command": ["mirrord-agent"], "args": ["--listen", f"127.0.0.1:{port + 3}", "--ttl", "60"],
                                                  "env": [{"name": "MIRRORD_AGENT_TOKEN", "value": "0" * 32}]}]}}}})
    pn = job_pods_wait("agent-dl")
    wait_pod(pn, lambda o: o["status"]["phase"] == "Running", "deadline agent Running")
    end = time.time() + 8
    while time.time() < end and call("GET", f"/api/v1/namespaces/default/pods/{pn}")[0] != 404:
        time.sleep(0.05)
    check(call("GET", f"/api/v1/namespaces/default/pods/{pn}")[0] == 404, "activeDeadlineSeconds deletes the pod")
    status, j = call("GET", "/apis/batch/v1/namespaces/default/jobs/agent-dl")
    check(j["status"]["conditions"][0]["type"] == "Failed" and j["status"]["conditions"][0]["reason"] == "DeadlineExceeded", "Job Failed DeadlineExceeded", j["status"])
    # Deleting a Job with propagationPolicy Background kills and removes its pod.
    status, job = agent_job("agent-d", ["--listen", f"127.0.0.1:{port + 1}", "--ttl", "60"])
    pn = job_pods_wait("agent-d")
    wait_pod(pn, lambda o: o["status"]["phase"] == "Running", "long agent Running")
    status, body = call("DELETE", "/apis/batch/v1/namespaces/default/jobs/agent-d", {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
    check(status == 200, "DELETE job with Background", body)
    end = time.time() + 5
    while time.time() < end and call("GET", f"/api/v1/namespaces/default/pods/{pn}")[0] != 404:
        time.sleep(0.05)
    check(call("GET", f"/api/v1/namespaces/default/pods/{pn}")[0] == 404, "the job's pod is deleted")


def job_pods_wait(job, ns="default"):
    end = time.time() + 5
    while time.time() < end:
        pods = job_pods(job, ns)
        if pods:
            return pods[0]["metadata"]["name"]
        time.sleep(0.05)
    check(False, f"job {job} made a pod")


def has_event(obj_name, reason, ns="default"):
    end = time.time() + 5
    while time.time() < end:
        items = call("GET", f"/api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name%3D{obj_name}")[1]["items"]
        if any(e["reason"] == reason for e in items):
            return True
        time.sleep(0.05)
    return False


def case_ephemeral():
    port = int(EXTRA[0]) if EXTRA else 31250
    container_id = EXTRA[1] if len(EXTRA) > 1 else "ab" * 32
    status, body = call("PATCH", "/api/v1/namespaces/default/pods/web/ephemeralcontainers",
                        {"spec": {"ephemeralContainers": [{"name": "mirrord-agent-e1", "image": "mirrord-native/agent:test", "command": ["mirrord-agent"],
                                                           "args": ["--listen", f"127.0.0.1:{port}", "--ttl", "2", "--ephemeral",
                                                                    "--container-id", container_id, "--container-runtime", "containerd"],
                                                           "env": [{"name": "MIRRORD_AGENT_TOKEN", "value": "0123456789abcdef0123456789abcdef"}]}]}},
                        "application/strategic-merge-patch+json")
    check(status == 200 and body["spec"]["ephemeralContainers"][0]["name"] == "mirrord-agent-e1", "ephemeral container added", body)
    p = wait_pod("web", lambda o: any("running" in s.get("state", {}) or "terminated" in s.get("state", {})
                                      for s in o["status"].get("ephemeralContainerStatuses", [])), "ephemeralContainerStatuses running")
    follow_log_until("default", "web", "agent ready - version", container="mirrord-agent-e1")
    # It listens inside the pod's netns: a port-forward to the pod reaches it.
    s = open_ws("web", port)
    s.settimeout(0.7)
    try:
        data = s.recv(100)
        check(data != b"" and data[2] != 1, "no error frame from a port-forward to the ephemeral agent", data)
    except socket.timeout:
        print("ok: port-forward to the ephemeral agent in the pod's netns connected")
    s.close()
    expect_status(call("PATCH", "/api/v1/namespaces/default/pods/web/ephemeralcontainers", {"spec": {"ephemeralContainers": []}}, "application/merge-patch+json"),
                  422, "Invalid", None, "existing ephemeral containers may not be removed")


def case_garbage():
    bodies = [None, "", "null", "5", '"s"', "[]", "{}", '{"metadata":5}', '{"metadata":{"name":5}}', '{"metadata":{"name":"a","labels":[1]}}',
              '{"metadata":{"name":"a","labels":{"k":1}}}', '{"metadata":{"name":"a"},"spec":5}', '{"metadata":{"name":"a"},"spec":{"containers":"x"}}',
              '{"metadata":{"name":"a"},"spec":{"containers":[5]}}', '{"metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"i","command":[1]}]}}',
              '{"metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"i","env":[5]}]}}',
              '{"metadata":{"name":"a"},"spec":{"template":5}}', '{"metadata":{"name":"a"},"spec":{"template":{"spec":{"containers":[]}}}}',
              '{"kind":"Other","metadata":{"name":"a"}}', '{"apiVersion":"v9","metadata":{"name":"a"}}', '{"metadata":{"name":"a","namespace":"other"}}',
              '{"metadata":{"name":"' + "a" * 300 + '"}}', "\x00\xff", '{"metadata":{"generateName":5}}']
    paths = ["/api/v1/namespaces/default/pods", "/apis/batch/v1/namespaces/default/jobs", "/api/v1/namespaces", "/api/v1/nodes",
             "/apis/apps/v1/namespaces/default/deployments", "/api/v1/namespaces/default/pods/web", "/api/v1/namespaces/default/pods/web/ephemeralcontainers",
             "/api/v1/namespaces/default/pods/web/status", "/api/v1/namespaces/default/pods/web/log", "/api/v1/namespaces/default/pods/web/portforward",
             "/api/v1/namespaces/default/pods/web/exec", "/api", "/apis/batch", "/api/v1/namespaces/default", "//", "/api/v1/namespaces//pods",
             "/api/v1/namespaces/default/pods/../../x", "/fake/objects", "/fake/faults", "/fake/nothing", "/%zz", "/api/v1/namespaces/default/pods?watch=true&resourceVersion=abc",
             "/api/v1/namespaces/default/pods?labelSelector=%28%28", "/api/v1/namespaces/default/pods/web/log?tailLines=x", "/api/v1/namespaces/default/pods?limit=-1"]
    ctypes = ["application/json", "application/merge-patch+json", "application/strategic-merge-patch+json", "application/json-patch+json", "text/plain"]
    worst = 0
    n = 0
    keep = [conn()]

    def call(method, path, body=None, content_type="application/json"):  # one keep-alive connection
        for attempt in range(2):
            try:
                c = keep[0]
                c.request(method, path, body=body, headers={"Authorization": "Bearer " + TOKEN, "Content-Type": content_type})
                r = c.getresponse()
                raw = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    c.close()
                    keep[0] = conn()
                try:
                    return r.status, json.loads(raw) if raw else None
                except ValueError:
                    return r.status, raw.decode(errors="replace")
            except (http.client.HTTPException, OSError):
                keep[0].close()
                keep[0] = conn()
        raise RuntimeError("no answer")

    for path in paths:
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "BREW"]:
            for body in (bodies if method in ("POST", "PUT", "PATCH") else [None]):
                for ct in (ctypes if method == "PATCH" else ["application/json"]):
                    status, resp = call(method, path, body, ct)
                    n += 1
                    if status >= 500:
                        check(False, "no 5xx for garbage", (method, path, body, ct, status, resp))
                    if status >= 400 and path.startswith("/api"):
                        check(isinstance(resp, dict) and resp.get("kind") == "Status" and resp.get("code") == status, "errors are Status objects", (method, path, body, resp))
                    worst = max(worst, status)
    check(n > 1000, f"{n} garbage requests answered without a 5xx (worst {worst})")
    # Raw protocol garbage.
    for raw in [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\n\r\n",
                b"GET /api HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b"\x16\x03\x01"]:
        s = CTX.wrap_socket(socket.create_connection((U.hostname, U.port), timeout=5), server_hostname=U.hostname)
        s.sendall(raw)
        try:
            s.recv(1000)
        except (OSError, ssl.SSLError):
            pass
        s.close()
    plain = socket.create_connection((U.hostname, U.port), timeout=5)  # no TLS at all
    plain.sendall(b"GET / HTTP/1.1\r\n\r\n")
    try:
        plain.recv(100)
    except OSError:
        pass
    plain.close()
    status, body = globals()["call"]("GET", "/version")
    check(status == 200 and body["major"] == "1", "still serving after protocol garbage", body)


CASES = {"garbage": case_garbage, "errors": case_errors, "crud": case_crud, "watch": case_watch, "control": case_control, "portforward": case_portforward,
         "kubelet": case_kubelet, "ephemeral": case_ephemeral}
CASES[CASE]()
print("ALL OK: " + CASE)
