#!/usr/bin/env python3
"""A reference osquery extension manager built only from PyPI `osquery`'s generated Thrift code.

    .venv/bin/python3 Tests/Peers/python/reference_manager.py SOCKET_PATH

It exists so the Swift SDK's examples are tested against a manager that shares no code with
ours. It serves ExtensionManager on a Unix socket the way osquery's core does (TServerSocket,
buffered transport, binary protocol, one thread per connection) and follows the core's rules
from docs: registration checks and messages, uuids 1..65535, ping -> {0, "pong"}, extensions()
without the core, options() with the socket and the active plugins, deregistration, a no-op
shutdown, `call` routed to the extension that owns the item (ping on one connection, then call
on another, as osquery does), and `query` for

    SELECT * | col[, col...] FROM <extension table> [WHERE col = 'v' [AND col = 'v' ...]]

by calling the owning extension's generate with an osquery-style context JSON and filtering the
rows itself. On SIGTERM/SIGINT it sends shutdown() to every extension, removes its socket and the
extension sockets, and exits 0.

Strings are decoded byte-faithfully (surrogateescape), as PyPI thrift is strict UTF-8 otherwise.
"""

import json
import os
import random
import re
import signal
import sys
import threading

from thrift.protocol import TBinaryProtocol
from thrift.server import TServer
from thrift.transport import TSocket, TTransport

from osquery.extensions import Extension, ExtensionManager, ttypes  # PyPI `osquery`


class FaithfulBinaryProtocol(TBinaryProtocol.TBinaryProtocol):
    def readString(self):
        return self.readBinary().decode("utf-8", "surrogateescape")

    def writeString(self, s):
        self.writeBinary(s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s)


class FaithfulFactory(TBinaryProtocol.TBinaryProtocolFactory):
    def getProtocol(self, trans):
        return FaithfulBinaryProtocol(trans, self.strictRead, self.strictWrite)


KNOWN_REGISTRIES = {"config", "config_parser", "database", "distributed", "enroll", "event_publisher",
                    "event_subscriber", "logger", "numeric_monitoring", "sql", "table",
                    "osquery_events_stream"}
BUILTIN = {"table": {"time", "processes", "osquery_info"}, "config": {"filesystem", "tls", "update"},
           "logger": {"filesystem", "tls", "syslog", "stdout"}}


def version_at_least(version, minimum):
    a = [p for p in version.split(".") if p != ""]
    b = minimum.split(".")
    if not a:
        return True
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else "0"
        y = b[i] if i < len(b) else "0"
        if x.isdigit() and y.isdigit():
            if int(x) != int(y):
                return int(x) > int(y)
        elif x != y:
            return x > y
    return True


def ext_client(path, timeout_ms=30000):
    sock = TSocket.TSocket(unix_socket=path)
    sock.setTimeout(timeout_ms)
    transport = TTransport.TBufferedTransport(sock)
    client = Extension.Client(FaithfulBinaryProtocol(transport))
    transport.open()
    return client, transport


class Manager(object):
    def __init__(self, socket_path):
        self.socket_path = socket_path
        self.lock = threading.Lock()
        self.registered = {}  # uuid -> (InternalExtensionInfo, registry)

    # Extension
    def ping(self):
        return ttypes.ExtensionStatus(code=0, message="pong", uuid=0)

    def shutdown(self):
        return None

    def _owner(self, registry, item):
        with self.lock:
            for uuid, (_, reg) in self.registered.items():
                if item in reg.get(registry, {}):
                    return uuid
        return None

    def _call_extension(self, uuid, registry, item, request):
        path = "%s.%d" % (self.socket_path, uuid)
        client, transport = ext_client(path, 10000)  # liveness pre-check, as osquery does
        try:
            client.ping()
        finally:
            transport.close()
        client, transport = ext_client(path)
        try:
            return client.call(registry, item, request)
        finally:
            transport.close()

    def call(self, registry, item, request):
        uuid = self._owner(registry, item)
        if uuid is None:
            if registry not in KNOWN_REGISTRIES:
                return ttypes.ExtensionResponse(
                    status=ttypes.ExtensionStatus(code=1, message="Unknown registry requested: " + registry), response=[])
            return ttypes.ExtensionResponse(
                status=ttypes.ExtensionStatus(code=1, message="Cannot call registry item: " + item), response=[])
        try:
            response = self._call_extension(uuid, registry, item, request)
        except Exception as e:  # noqa: BLE001
            return ttypes.ExtensionResponse(status=ttypes.ExtensionStatus(code=1, message=str(e)), response=[])
        response.status.uuid = 0
        if response.status.code != 0:
            response.response = []
        return response

    # ExtensionManager
    def extensions(self):
        with self.lock:
            return {uuid: info for uuid, (info, _) in self.registered.items()}

    def options(self):
        opt = lambda v, d, t="string": ttypes.InternalOptionInfo(value=v, default_value=d, type=t)  # noqa: E731
        return {
            "extensions_socket": opt(self.socket_path, "/var/osquery/osquery.em"),
            "config_plugin": opt("filesystem", "filesystem"),
            "logger_plugin": opt("filesystem", "filesystem"),
            "distributed_plugin": opt("tls", "tls"),
            "extensions_interval": opt("3", "3"),
        }

    def registerExtension(self, info, registry):
        with self.lock:
            if any(i.name == info.name for i, _ in self.registered.values()):
                return ttypes.ExtensionStatus(code=1, message="Duplicate extension registered")
            if not version_at_least(info.sdk_version or "", "1.7.7"):
                return ttypes.ExtensionStatus(code=1, message="Incompatible extension SDK version")
            for reg in sorted(registry):
                if reg not in KNOWN_REGISTRIES:
                    return ttypes.ExtensionStatus(code=1, message="Failed adding registry: Unknown registry: " + reg)
                for item, routes in registry[reg].items():
                    taken = item in BUILTIN.get(reg, set()) or any(
                        item in r.get(reg, {}) for _, r in self.registered.values())
                    if taken:
                        return ttypes.ExtensionStatus(
                            code=1, message="Failed adding registry: Registry item %s conflicts with another item "
                                            "of the same name." % item)
                    if reg == "table" and not routes:
                        return ttypes.ExtensionStatus(code=1, message="Failed adding registry: Invalid route info")
            uuid = random.randint(1, 65535)
            while uuid in self.registered:
                uuid = random.randint(1, 65535)
            self.registered[uuid] = (info, registry)
            sys.stderr.write("Registering extension (%s, %d, version=%s, sdk=%s)\n"
                             % (info.name, uuid, info.version, info.sdk_version))
            return ttypes.ExtensionStatus(code=0, message="OK", uuid=uuid)

    def deregisterExtension(self, uuid):
        with self.lock:
            if uuid not in self.registered:
                return ttypes.ExtensionStatus(code=1, message="No extension UUID found")
            del self.registered[uuid]
        try:
            os.unlink("%s.%d" % (self.socket_path, uuid))
        except OSError:
            pass
        return ttypes.ExtensionStatus(code=0, message="OK", uuid=0)

    QUERY = re.compile(r"^\s*select\s+(?P<cols>.+?)\s+from\s+(?P<table>\w+)"
                       r"(?:\s+where\s+(?P<where>.+?))?\s*;?\s*$", re.I | re.S)
    EQ = re.compile(r"^\s*(\w+)\s*=\s*'((?:[^']|'')*)'\s*$")

    def _fail(self, message):
        return ttypes.ExtensionResponse(status=ttypes.ExtensionStatus(code=1, message=message), response=[])

    def query(self, sql):
        m = self.QUERY.match(sql)
        if not m:
            return self._fail("reference manager: unsupported SQL: " + sql)
        table = m.group("table")
        uuid = self._owner("table", table)
        if uuid is None:
            return self._fail("no such table: " + table)
        with self.lock:
            routes = self.registered[uuid][1]["table"][table]
        columns = [(r.get("name"), r.get("type", "TEXT"), int(r.get("op", "0") or 0))
                   for r in routes if r.get("id") == "column"]
        names = [c[0] for c in columns]
        wanted = [c.strip() for c in m.group("cols").split(",")]
        if wanted == ["*"]:
            wanted = [n for (n, _, op) in columns if not op & 16]
        for w in wanted:
            if w not in names:
                return self._fail("no such column: " + w)
        filters = []
        if m.group("where"):
            for part in re.split(r"\s+and\s+", m.group("where"), flags=re.I):
                e = self.EQ.match(part)
                if not e or e.group(1) not in names:
                    return self._fail("reference manager: unsupported WHERE: " + part)
                filters.append((e.group(1), e.group(2).replace("''", "'")))
        used = sorted(set(wanted) | {f[0] for f in filters})
        constraints = []
        for (name, ctype, _) in sorted(columns, key=lambda c: c[0].encode("utf-8", "surrogateescape")):
            lst = [{"op": 2, "expr": v} for (c, v) in filters if c == name]
            constraints.append({"name": name, "list": lst, "affinity": ctype})
        bits = 0
        for i, n in enumerate(names):
            if n in used:
                bits |= 1 << min(i, 63)
        context = json.dumps({"constraints": constraints, "colsUsed": used, "colsUsedBitset": bits})
        try:
            response = self._call_extension(uuid, "table", table, {"action": "generate", "context": context})
        except Exception as e:  # noqa: BLE001
            return self._fail("extension call failed: %s" % e)
        if response.status.code != 0:
            return self._fail(response.status.message)
        rows = []
        for row in response.response:
            if all(row.get(c) == v for (c, v) in filters):
                rows.append({c: row.get(c, "") for c in wanted})
        return ttypes.ExtensionResponse(status=ttypes.ExtensionStatus(code=0, message="OK", uuid=0), response=rows)

    def getQueryColumns(self, sql):
        return self._fail("reference manager: getQueryColumns is not supported")

    def shutdown_all(self):
        with self.lock:
            uuids = list(self.registered)
        for uuid in uuids:
            try:
                client, transport = ext_client("%s.%d" % (self.socket_path, uuid), 5000)
                try:
                    client.shutdown()
                finally:
                    transport.close()
            except Exception:  # noqa: BLE001
                pass


def main():
    if len(sys.argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    path = sys.argv[1]
    if os.path.exists(path):
        os.unlink(path)
    manager = Manager(path)
    processor = ExtensionManager.Processor(manager)
    server_socket = TSocket.TServerSocket(unix_socket=path)
    server = TServer.TThreadedServer(processor, server_socket, TTransport.TBufferedTransportFactory(),
                                     FaithfulFactory())
    server.daemon = True

    def stop(signum, frame):
        manager.shutdown_all()
        for f in [path] + ["%s.%d" % (path, u) for u in list(manager.registered)]:
            try:
                os.unlink(f)
            except OSError:
                pass
        sys.stdout.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    t = threading.Thread(target=server.serve, daemon=True)
    t.start()
    sys.stdout.write("READY %s\n" % path)
    sys.stdout.flush()
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
