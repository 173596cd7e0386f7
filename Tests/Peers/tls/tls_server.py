#!/usr/bin/env python3
"""A TLS remote API server for osqueryd's tests, after osquery's docs/wiki/deployment/remote.md.

Stdlib only. State and control are files in a directory (the test writes and reads them):
  config.json            the config served at */config (re-read on every request)
  queries.json           {"queries": {...}, "discovery": {...}, "accelerate": N}: served once by
                         */distributed/read, then removed
  invalidate             when present, every node key is forgotten (then the file is removed)
  mode                   how to answer: ok (default), 500, garbage, deep, hang, huge, endless
  nodekeys.json          node keys handed out (kept across restarts of the server)
  enroll.jsonl           every enroll request's body
  requests.jsonl         every request: path, node key, headers, mode, bytes on the wire and of JSON
  log-result.jsonl       each result line received, in order; log-status.jsonl the same for statuses
  distributed.jsonl      each distributed write body
  carves/<session>       reassembled carve data; carve-begin.jsonl the begin requests

  tls_server.py certs DIR        make a CA, a server certificate for localhost/127.0.0.1, a client
                                 certificate and a second, unrelated CA (all with openssl)
  tls_server.py serve DIR --port P --cert C --key K [--client-ca CA] [--secret S]
                                 serve; prints the port on stdout once listening
"""
import base64
import gzip
import json
import os
import secrets
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_certs(d):
    os.makedirs(d, exist_ok=True)
    p = lambda n: os.path.join(d, n)
    ext = p("san.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n")
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=osquery test " + ca,
                "-keyout", p(ca + ".key"), "-out", p(ca + ".pem"))
    for name, cn in (("server", "localhost"), ("client", "osquery client")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + cn, "-keyout", p(name + ".key"),
                "-out", p(name + ".csr"))
        openssl("x509", "-req", "-in", p(name + ".csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
                "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", p(name + ".pem"))


class State:
    def __init__(self, d, secret):
        self.dir = d
        self.secret = secret

    def path(self, name):
        return os.path.join(self.dir, name)

    def read_json(self, name, default):
        try:
            with open(self.path(name)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return default

    def append(self, name, obj):
        with open(self.path(name), "a") as f:
            f.write(json.dumps(obj, sort_keys=True) + "\n")

    def mode(self):
        try:
            with open(self.path("mode")) as f:
                return f.read().strip() or "ok"
        except OSError:
            return "ok"

    def node_keys(self):
        if os.path.exists(self.path("invalidate")):
            os.remove(self.path("invalidate"))
            self.write_keys([])
        return self.read_json("nodekeys.json", [])

    def write_keys(self, keys):
        tmp = self.path("nodekeys.json.tmp")
        with open(tmp, "w") as f:
            json.dump(keys, f)
        os.replace(tmp, self.path("nodekeys.json"))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None

    def log_message(self, *args):
        pass

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        self.wire_bytes = len(raw)
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        self.json_bytes = len(raw)
        return json.loads(raw or b"{}")

    def answer(self, obj, status=200):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if "gzip" in (self.headers.get("Accept-Encoding") or ""):
            data = gzip.compress(data)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        s = self.state
        path = self.path.split("?")[0]
        try:
            req = self.body()
        except (ValueError, OSError):
            return self.answer({"error": "bad request"}, 400)
        mode = s.mode()
        with LOCK:
            s.append("requests.jsonl", {"path": path, "node_key": req.get("node_key"),
                                        "authorization": self.headers.get("Authorization"),
                                        "user_agent": self.headers.get("User-Agent"),
                                        "encoding": self.headers.get("Content-Encoding"), "mode": mode,
                                        "wire_bytes": self.wire_bytes, "json_bytes": self.json_bytes})
        if mode == "500":
            return self.answer({"error": "internal"}, 500)
        if mode == "garbage":
            data = b"\x00\xffnot json at all{{{"
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return self.wfile.write(data)
        if mode == "deep":
            # Nested past any parser's sensible depth, small enough to pass a size limit.
            data = b'{"a": ' + b"[" * 500000
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return self.wfile.write(data)
        if mode == "hang":
            time.sleep(3600)
            return
        if mode == "huge":
            # Announced big, sent in full: a client must stop reading at its limit.
            data = b'{"pad": "' + b"x" * (8 << 20) + b'"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except OSError:
                pass
            return
        if mode == "endless":
            # A body that never ends, one byte at a time: no read timeout ever trips.
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"1\r\n \r\n")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                return
        if path.endswith("/enroll"):
            return self.enroll(req)
        with LOCK:
            keys = s.node_keys()
        if req.get("node_key") not in keys:
            return self.answer({"node_invalid": True, "error": "invalid node key"}, 401)
        if path.endswith("/config"):
            return self.answer(s.read_json("config.json", {}))
        if path.endswith("/log"):
            name = "log-result.jsonl" if req.get("log_type") == "result" else "log-status.jsonl"
            with LOCK:
                with open(s.path(name), "a") as f:
                    for line in req.get("data") or []:
                        f.write(json.dumps(line, sort_keys=True) + "\n")
            return self.answer({})
        if path.endswith("/distributed/read"):
            with LOCK:
                work = s.read_json("queries.json", {"queries": {}})
                if os.path.exists(s.path("queries.json")):
                    os.remove(s.path("queries.json"))
            return self.answer(work)
        if path.endswith("/distributed/write"):
            with LOCK:
                s.append("distributed.jsonl", req)
            return self.answer({})
        if path.endswith("/carve/begin"):
            session = secrets.token_hex(8)
            with LOCK:
                s.append("carve-begin.jsonl", req)
                os.makedirs(s.path("carves"), exist_ok=True)
                with open(s.path("carves/" + session + ".meta"), "w") as f:
                    json.dump(req, f)
            return self.answer({"session_id": session})
        if path.endswith("/carve/block"):
            session = os.path.basename(str(req.get("session_id")))
            if not os.path.exists(s.path("carves/" + session + ".meta")):
                return self.answer({"error": "unknown session"}, 404)
            with LOCK:
                with open(s.path("carves/%s.%08d" % (session, int(req.get("block_id", 0)))), "wb") as f:
                    f.write(base64.b64decode(req.get("data") or ""))
            return self.answer({"success": True})
        return self.answer({"error": "unknown endpoint"}, 404)

    def enroll(self, req):
        s = self.state
        with LOCK:
            s.append("enroll.jsonl", req)
            if req.get("enroll_secret") != s.secret:
                return self.answer({"node_invalid": True, "error": "invalid enroll secret"}, 401)
            key = secrets.token_hex(16)
            keys = s.node_keys()
            keys.append(key)
            s.write_keys(keys)
        return self.answer({"node_key": key})


def serve(d, port, cert, key, client_ca, secret):
    state = State(d, secret)
    Handler.state = state
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    # Refused handshakes (a client with the wrong CA, or none) are the tests' business, not noise.
    ThreadingHTTPServer.handle_error = lambda self, request, address: None
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    # The handshake happens in the request's thread: a client that stalls it holds only that thread.
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def main(argv):
    if len(argv) >= 3 and argv[1] == "certs":
        make_certs(argv[2])
        return 0
    if len(argv) >= 3 and argv[1] == "serve":
        opts = {"--port": "0", "--cert": None, "--key": None, "--client-ca": None, "--secret": "secret"}
        rest = argv[3:]
        for i in range(0, len(rest) - 1, 2):
            opts[rest[i]] = rest[i + 1]
        serve(argv[2], int(opts["--port"]), opts["--cert"], opts["--key"], opts["--client-ca"], opts["--secret"])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
