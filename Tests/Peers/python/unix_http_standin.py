"""Stand-ins for the HTTP APIs some tables read over a Unix socket (Docker's and LXD's), for the
hostile-server tests: `python3 unix_http_standin.py API DIRECTORY` serves each behaviour of API
(docker or lxd) on its own socket DIRECTORY/<behaviour>.sock, prints `ready` once all listen and
runs until its stdin closes. Each request target is appended to DIRECTORY/<behaviour>.requests,
so a test can tell which requests the tables sent."""
import json, os, socket, sys, threading, time

directory = sys.argv[2] if len(sys.argv) > 2 else "."


def serve(path, handler):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(16)

    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=handler, args=(c,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


def request(c):
    """Reads the request head, logs its target and returns it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = c.recv(4096)
        if not chunk:
            break
        data += chunk
    path = data.split(b" ")[1].decode() if b" " in data else ""
    with open(os.path.splitext(c.getsockname())[0] + ".requests", "a") as requests:
        requests.write(path + "\n")
    return path


def reply(c, body, status=b"200 OK"):
    c.sendall(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))
    c.close()


# Behaviours every API gets.
def hang(c):
    request(c)
    time.sleep(3600)


def garbage(c):
    request(c)
    c.sendall(b"garbage\r\n\r\n")
    c.close()


def endless(c):
    request(c)
    try:
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[")
        while True:
            c.sendall(b"1," * 32768)
    except OSError:
        pass


# Docker: broken JSON, a container list whose inspects hang, more containers than
# --docker_max_objects, and a proper /version.
def docker_badjson(c):
    request(c)
    reply(c, b'{"Version": ')


DOCKER_CONTAINERS = json.dumps([{"Id": "%064x" % i, "Names": ["/h%d" % i], "State": "running"} for i in range(3)]).encode()


def docker_listhang(c):
    if request(c).startswith("/containers/json"):
        reply(c, DOCKER_CONTAINERS)
    else:
        time.sleep(3600)


DOCKER_MANY = json.dumps([{"Id": "%064x" % (i + 16), "Names": ["/m%d" % i], "State": "running"} for i in range(5)]).encode()


def docker_many(c):
    if request(c).startswith("/containers/json"):
        reply(c, DOCKER_MANY)
    else:
        reply(c, json.dumps({"State": {"Pid": 0}, "Config": {"Env": ["A=1", "BARE"]}}).encode())


def docker_good(c):
    request(c)
    reply(c, json.dumps({"Version": "99.0", "ApiVersion": "1.99"}).encode())


# LXD's documented answers (API 1.0), and ones that are not.
def lxd_sync(metadata, status=b"200 OK"):
    return status, json.dumps({"type": "sync", "status": "Success", "status_code": 200, "metadata": metadata}).encode()


def lxd_answer(path):
    if path == "/1.0/containers":
        return lxd_sync(["/1.0/containers/h0", "/1.0/containers/slow", "/1.0/containers/h2"])
    if path == "/1.0/containers/h0":
        return lxd_sync({"name": "h0", "status": "Running", "stateful": False, "ephemeral": False, "created_at": "2024-01-02T03:04:05Z",
                         "config": {"volatile.base_image": "ab" * 32}})
    if path == "/1.0/containers/h0/state":
        return lxd_sync({"pid": 4242, "processes": 7}, b"202 OK")
    if path == "/1.0/containers/h0/metadata":
        return lxd_sync({"properties": {"os": "Debian", "description": "d", "architecture": "amd64"}})
    if path == "/1.0/containers/slow":
        return None
    if path == "/1.0/images":
        return lxd_sync(["/1.0/images/%064x" % i for i in range(5)])
    if path.startswith("/1.0/images/"):
        return lxd_sync({"fingerprint": path[12:], "architecture": "x86_64", "size": 10, "public": True, "aliases": [{"name": "a"}, {"name": "b"}]})
    if path == "/1.0/networks":
        return lxd_sync(["/1.0/networks/bad name", "/1.0/networks/list", "/1.0/networks/n1"])
    if path == "/1.0/networks/list":
        return lxd_sync(["not", "an", "object"])
    if path == "/1.0/networks/n1":
        return lxd_sync({"name": "n1", "type": "bridge", "managed": True, "config": {"ipv4.address": "10.0.0.1/24"},
                         "used_by": ["/1.0/containers/h0", "/1.0/instances/h2", "/1.0/profiles/default"]})
    if path == "/1.0/networks/n1/state":
        return b"404 Not Found", json.dumps({"type": "error", "error": "Network not found", "error_code": 404}).encode()
    if path == "/1.0/certificates":
        return lxd_sync("not a list")
    if path == "/1.0/cluster":
        return lxd_sync({"server_name": "s", "enabled": True, "member_config": [{"entity": "e1", "name": "n1", "key": "k1", "description": "one"},
                         {"entity": "e2", "name": "n2", "key": "k2", "value": "v2", "description": "two"}]})
    return b"404 Not Found", b'{"type": "error", "error": "not found", "error_code": 404}'


def lxd(c):
    got = lxd_answer(request(c))
    if got is None:
        time.sleep(3600)
        return
    status, body = got
    reply(c, body, status)


APIS = {
    "docker": [("hang", hang), ("garbage", garbage), ("endless", endless), ("badjson", docker_badjson), ("listhang", docker_listhang),
               ("many", docker_many), ("good", docker_good)],
    "lxd": [("lxd", lxd), ("hang", hang), ("endless", endless)],
}

if __name__ == "__main__":
    for name, handler in APIS[sys.argv[1]]:
        serve(os.path.join(directory, name + ".sock"), handler)
    print("ready", flush=True)
    sys.stdin.read()
