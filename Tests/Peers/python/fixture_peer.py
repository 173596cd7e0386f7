#!/usr/bin/env python3
"""Python (PyPI `thrift`) peer for the cross-language fixture of Tests/Peers/FIXTURE.md.

    .venv/bin/python3 Tests/Peers/python/fixture_peer.py server SOCKET_PATH
    .venv/bin/python3 Tests/Peers/python/fixture_peer.py client SOCKET_PATH

The generated code comes from `thrift --gen py idl/osquery.thrift`, which scripts/build-peers.sh
writes to <repo>/.build-peers/gen-py (env OSQ_PEERS_DIR overrides <repo>/.build-peers).

Strings are bytes on the wire. PyPI thrift decodes every `string` as strict UTF-8 (and encodes
str as strict UTF-8), so invalid UTF-8 would raise. FaithfulBinaryProtocol decodes and encodes
with `surrogateescape` instead: every byte sequence becomes a str that encodes back to exactly
the same bytes. Raw-byte comparisons (sorting, hex) therefore always go through `raw()`.
"""

import os
import sys
import threading
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PEERS_DIR = os.environ.get("OSQ_PEERS_DIR") or os.path.join(REPO, ".build-peers")
GEN_PY = os.path.join(PEERS_DIR, "gen-py")
if not os.path.isfile(os.path.join(GEN_PY, "osquery", "extensions", "ExtensionManager.py")):
    sys.stderr.write("fixture_peer.py: generated code not found in %s; run scripts/build-peers.sh\n"
                     % GEN_PY)
    sys.exit(2)
# First on the path, so `osquery` is the generated package and not PyPI's `osquery` SDK.
sys.path.insert(0, GEN_PY)

from thrift.protocol import TBinaryProtocol  # noqa: E402
from thrift.server import TServer  # noqa: E402
from thrift.transport import TSocket, TTransport  # noqa: E402

from osquery.extensions import ExtensionManager  # noqa: E402
from osquery.extensions.ttypes import (  # noqa: E402
    ExtensionResponse,
    ExtensionStatus,
    InternalExtensionInfo,
    InternalOptionInfo,
)

I64MAX = 9223372036854775807
I64MIN = -9223372036854775808
CLIENT_TIMEOUT_MS = 120 * 1000


# ---------------------------------------------------------------------------------------------
# Byte-faithful strings


def raw(s):
    """The wire bytes of a string as this peer holds it."""
    if s is None:
        return b""
    if isinstance(s, bytes):
        return s
    return s.encode("utf-8", "surrogateescape")


def text(b):
    """A str holding exactly the bytes `b` (invalid UTF-8 kept as lone surrogates)."""
    return b.decode("utf-8", "surrogateescape")


class FaithfulBinaryProtocol(TBinaryProtocol.TBinaryProtocol):
    """TBinaryProtocol whose strings round-trip arbitrary bytes."""

    def readString(self):
        return self.readBinary().decode("utf-8", "surrogateescape")

    def writeString(self, str_val):
        self.writeBinary(raw(str_val))


class FaithfulBinaryProtocolFactory(TBinaryProtocol.TBinaryProtocolFactory):
    def getProtocol(self, trans):
        return FaithfulBinaryProtocol(trans, self.strictRead, self.strictWrite,
                                      string_length_limit=self.string_length_limit,
                                      container_length_limit=self.container_length_limit)


# ---------------------------------------------------------------------------------------------
# Fixture values


def row(i):
    return {"i": str(i), "name": "row-%d" % i, "path": "/proc/%d/status" % i, "zero": "",
            "unicode": "ünïcødé-✓", "neg": str(-i)}


def rows(n):
    return [row(i) for i in range(n)]


def fixture_extensions():
    return {
        1: InternalExtensionInfo("alpha", "1.0.0", "1.7.7", "1.0.0"),
        65535: InternalExtensionInfo("ünïcødé", "", "", ""),
        I64MAX: InternalExtensionInfo("max", "v", "s", "m"),
        I64MIN: InternalExtensionInfo("min", "", "", ""),
    }


def fixture_options():
    return {
        "extensions_socket": InternalOptionInfo("/fixture/osquery.em", "/var/osquery/osquery.em",
                                                "string"),
        "verbose": InternalOptionInfo("false", "false", "bool"),
        "empty": InternalOptionInfo("", "", ""),
    }


def hexs(s):
    return raw(s).hex()


def canon(info, registry):
    """CANON(info, registry) of FIXTURE.md; None fields count as empty."""
    info = info or InternalExtensionInfo()
    out = ",".join(hexs(x) for x in (info.name, info.version, info.sdk_version,
                                    info.min_sdk_version))
    registry = registry or {}
    for rname in sorted(registry, key=raw):
        plugins = registry[rname] or {}
        parts = []
        for pname in sorted(plugins, key=raw):
            routes = plugins[pname] or []
            s = hexs(pname) + "="
            for route in routes:
                route = route or {}
                s += "{" + ";".join(hexs(k) + "=" + hexs(route[k]) for k in sorted(route, key=raw)) + "}"
            parts.append(s)
        out += "|" + hexs(rname) + ":" + "&".join(parts)
    return out


def route_count(registry):
    return sum(len(routes or []) for plugins in (registry or {}).values()
               for routes in (plugins or {}).values())


# ---------------------------------------------------------------------------------------------
# Server


class FixtureHandler(object):
    def ping(self):
        return ExtensionStatus(0, "pong", I64MAX)

    def call(self, registry, item, request):
        registry = registry or ""
        item = item or ""
        request = request or {}
        if registry == "fail":
            return ExtensionResponse(ExtensionStatus(2, "failed: " + item, 0), [])
        if registry == "sparse":
            # Only `code` set: message, uuid and response stay None and are absent on the wire.
            return ExtensionResponse(status=ExtensionStatus(code=0))
        if "rows" in request:
            n = request["rows"]
            if not (n.isascii() and n.isdigit()):
                raise ValueError("rows must be a decimal number")
            return ExtensionResponse(ExtensionStatus(0, "OK", 0), rows(int(n)))
        return ExtensionResponse(ExtensionStatus(0, "OK", I64MIN),
                                 [dict(request), {"registry": registry, "item": item}])

    def shutdown(self):
        # The processor exits right after the reply is flushed; this is only a backstop.
        t = threading.Timer(0.8, _exit_now)
        t.daemon = True
        t.start()

    def extensions(self):
        return fixture_extensions()

    def options(self):
        return fixture_options()

    def registerExtension(self, info, registry):
        return ExtensionStatus(0, canon(info, registry), route_count(registry))

    def deregisterExtension(self, uuid):
        uuid = uuid or 0
        return ExtensionStatus(0, str(uuid), uuid)

    def query(self, sql):
        sql = sql or ""
        if sql.startswith("rows:") and sql[5:].isascii() and sql[5:].isdigit():
            return ExtensionResponse(ExtensionStatus(0, "OK", 0), rows(int(sql[5:])))
        if sql == "error":
            return ExtensionResponse(ExtensionStatus(1, 'near "error": syntax error', 0), [])
        return ExtensionResponse(ExtensionStatus(0, "OK", 0), [{"sql": sql}])

    def getQueryColumns(self, sql):
        sql = sql or ""
        return ExtensionResponse(ExtensionStatus(0, "OK", 0), [{sql: "TEXT"}, {"n": "INTEGER"}])


_socket_path = None


def _exit_now():
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    if _socket_path:
        try:
            os.unlink(_socket_path)
        except OSError:
            pass
    os._exit(0)


class FixtureProcessor(ExtensionManager.Processor):
    def __init__(self, handler):
        ExtensionManager.Processor.__init__(self, handler)
        self._processMap["shutdown"] = FixtureProcessor.process_shutdown

    def process_shutdown(self, seqid, iprot, oprot):
        ExtensionManager.Processor.process_shutdown(self, seqid, iprot, oprot)  # replies, flushes
        _exit_now()


class ReadyServerSocket(TSocket.TServerSocket):
    def listen(self):
        TSocket.TServerSocket.listen(self)
        sys.stdout.write("READY\n")
        sys.stdout.flush()


def run_server(path):
    global _socket_path
    if os.path.lexists(path):
        os.unlink(path)
    _socket_path = path
    transport = ReadyServerSocket(unix_socket=path)
    server = TServer.TThreadedServer(FixtureProcessor(FixtureHandler()), transport,
                                     TTransport.TBufferedTransportFactory(),
                                     FaithfulBinaryProtocolFactory(), daemon=True)
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    return 0


# ---------------------------------------------------------------------------------------------
# Client


class CheckFailed(Exception):
    pass


def show(v, limit=120):
    if isinstance(v, str):
        r = repr(raw(v))
    else:
        r = repr(v)
    return r if len(r) <= limit else r[:limit] + "..."


def first_diff(path, exp, act):
    """None when equal, else a description of the first difference."""
    if type(exp) is type(act) and exp == act:  # fast path; the walk below only explains
        return None
    if isinstance(exp, dict):
        if not isinstance(act, dict):
            return "%s: expected a map, got %s" % (path, show(act))
        if len(exp) != len(act):
            missing = [k for k in exp if k not in act][:3]
            extra = [k for k in act if k not in exp][:3]
            return "%s: expected %d entries, got %d (missing %s, extra %s)" % (
                path, len(exp), len(act), [raw(k) for k in missing], [raw(k) for k in extra])
        for k in exp:
            if k not in act:
                return "%s: missing key %s" % (path, show(k))
            d = first_diff("%s[%s]" % (path, show(k, 40)), exp[k], act[k])
            if d:
                return d
        return None
    if isinstance(exp, list):
        if not isinstance(act, list):
            return "%s: expected a list, got %s" % (path, show(act))
        if len(exp) != len(act):
            return "%s: expected %d elements, got %d" % (path, len(exp), len(act))
        for i, (e, a) in enumerate(zip(exp, act)):
            d = first_diff("%s[%d]" % (path, i), e, a)
            if d:
                return d
        return None
    if isinstance(exp, InternalExtensionInfo):
        return first_diff(path, [exp.name, exp.version, exp.sdk_version, exp.min_sdk_version],
                          [norm_s(act.name), norm_s(act.version), norm_s(act.sdk_version),
                           norm_s(act.min_sdk_version)] if act is not None else None)
    if isinstance(exp, InternalOptionInfo):
        return first_diff(path, [exp.value, exp.default_value, exp.type],
                          [norm_s(act.value), norm_s(act.default_value), norm_s(act.type)]
                          if act is not None else None)
    if type(exp) is not type(act) or exp != act:
        return "%s: expected %s, got %s" % (path, show(exp), show(act))
    return None


def expect(what, exp, act):
    d = first_diff(what, exp, act)
    if d:
        raise CheckFailed(d)


def norm_s(v):
    return "" if v is None else v


def norm_status(st):
    """A status as (code, message, uuid); absent fields read as 0 / ""."""
    if st is None:
        return (0, "", 0)
    return (st.code if st.code is not None else 0, norm_s(st.message),
            st.uuid if st.uuid is not None else 0)


def expect_status(st, code, message, uuid):
    got = norm_status(st)
    for name, e, a in zip(("code", "message", "uuid"), (code, message, uuid), got):
        expect("status." + name, e, a)


def expect_response(resp, code, message, uuid, rows_):
    if resp is None:
        raise CheckFailed("no response struct")
    expect_status(resp.status, code, message, uuid)
    expect("response", rows_, resp.response if resp.response is not None else [])


class Connection(object):
    def __init__(self, path):
        sock = TSocket.TSocket(unix_socket=path)
        sock.setTimeout(CLIENT_TIMEOUT_MS)
        self.transport = TTransport.TBufferedTransport(sock)
        self.client = ExtensionManager.Client(FaithfulBinaryProtocol(self.transport))
        self.transport.open()

    def close(self):
        try:
            self.transport.close()
        except Exception:
            pass


def echo(registry, item, request):
    return [dict(request), {"registry": registry, "item": item}]


REGISTRY_10 = {
    "table": {
        "t1": [{"id": "column", "name": "a", "type": "TEXT", "op": "0"},
               {"id": "attributes", "attributes": "0"}],
        "t2": [],
    },
    "logger": {"l": []},
    "config": {},
}


def build_checks(path):
    checks = []

    def check(num, name):
        def register(fn):
            checks.append((num, name, fn))
            return fn
        return register

    @check("1", "ping")
    def _(c):
        expect_status(c.ping(), 0, "pong", I64MAX)

    @check("2", "call-echo")
    def _(c):
        req = {"action": "generate", "context": "{}"}
        expect_response(c.call("table", "t", req), 0, "OK", I64MIN, echo("table", "t", req))

    @check("3", "call-empty-request")
    def _(c):
        expect_response(c.call("r", "i", {}), 0, "OK", I64MIN, echo("r", "i", {}))

    @check("4", "call-bytes")
    def _(c):
        req = {"ключ": "値✓", "invalid-value": text(b"\xff\xfe\x80a"), text(b"\xc3("): "invalid-key"}
        expect_response(c.call("table", "bytes", req), 0, "OK", I64MIN, echo("table", "bytes", req))

    @check("5", "call-large-request")
    def _(c):
        req = {"k%d" % i: "v%d" % i for i in range(10000)}
        expect_response(c.call("table", "big", req), 0, "OK", I64MIN, echo("table", "big", req))

    @check("6", "call-rows-100000")
    def _(c):
        expect_response(c.call("x", "y", {"rows": "100000"}), 0, "OK", 0, rows(100000))

    @check("7", "call-fail")
    def _(c):
        expect_response(c.call("fail", "boom", {}), 2, "failed: boom", 0, [])

    @check("7b", "sparse")
    def _(c):
        expect_response(c.call("sparse", "s", {}), 0, "", 0, [])

    @check("8", "extensions")
    def _(c):
        expect("extensions", fixture_extensions(), c.extensions())

    @check("9", "options")
    def _(c):
        expect("options", fixture_options(), c.options())

    @check("10", "register")
    def _(c):
        info = InternalExtensionInfo("ext-ü", "1.2.3", "1.7.7", "1.0.0")
        expect_status(c.registerExtension(info, REGISTRY_10), 0, canon(info, REGISTRY_10), 2)

    @check("11", "register-empty")
    def _(c):
        # No field set at all: the info's strings are absent on the wire, as Python leaves them.
        expect_status(c.registerExtension(InternalExtensionInfo(), {}), 0, ",,,", 0)

    @check("12", "register-bytes")
    def _(c):
        info = InternalExtensionInfo(text(b"\xff\x00A"), "1", "", "")
        reg = {"table": {text(b"p\xff"): [{text(b"\xc3("): text(b"\xfe"), "a": ""}]}}
        st = c.registerExtension(info, reg)
        exp = canon(info, reg)
        if not exp.startswith("ff0041,"):
            raise CheckFailed("local CANON is wrong: %s" % exp)
        expect_status(st, 0, exp, 1)

    @check("13", "deregister")
    def _(c):
        for u in (I64MAX, I64MIN, 0):
            expect_status(c.deregisterExtension(u), 0, str(u), u)

    @check("14", "query-rows-100000")
    def _(c):
        expect_response(c.query("rows:100000"), 0, "OK", 0, rows(100000))

    @check("15", "query-error")
    def _(c):
        expect_response(c.query("error"), 1, 'near "error": syntax error', 0, [])

    @check("16", "query-bytes")
    def _(c):
        sql = text("select 'ü' ".encode() + b"\xff")
        expect_response(c.query(sql), 0, "OK", 0, [{"sql": sql}])

    @check("17", "query-empty")
    def _(c):
        expect_response(c.query(""), 0, "OK", 0, [{"sql": ""}])

    @check("18", "columns")
    def _(c):
        expect_response(c.getQueryColumns("select 1"), 0, "OK", 0,
                        [{"select 1": "TEXT"}, {"n": "INTEGER"}])

    @check("19", "sequence")
    def _(c):
        # A fresh connection (the main one stays open): three calls in a row on it.
        conn = Connection(path)
        try:
            expect_status(conn.client.ping(), 0, "pong", I64MAX)
            expect("extensions", fixture_extensions(), conn.client.extensions())
            expect("options", fixture_options(), conn.client.options())
        finally:
            conn.close()

    @check("20", "shutdown")
    def _(c):
        c.shutdown()

    return checks


def run_client(path):
    passed = failed = 0
    conn = None
    for num, name, fn in build_checks(path):
        try:
            if conn is None:
                conn = Connection(path)
            fn(conn.client)
            print("ok %s %s" % (num, name), flush=True)
            passed += 1
        except CheckFailed as e:
            print("FAIL %s %s: %s" % (num, name, e), flush=True)
            failed += 1
        except Exception as e:
            msg = "%s: %s" % (type(e).__name__, e)
            print("FAIL %s %s: %s" % (num, name, msg.replace("\n", " ")), flush=True)
            if os.environ.get("OSQ_PEER_DEBUG"):
                traceback.print_exc()
            failed += 1
            if conn is not None:  # the stream may be mid-message: start over
                conn.close()
                conn = None
    if conn is not None:
        conn.close()
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 0 if failed == 0 else 1


def main(argv):
    if len(argv) != 3 or argv[1] not in ("server", "client"):
        sys.stderr.write("usage: fixture_peer.py server|client SOCKET_PATH\n")
        return 2
    if argv[1] == "server":
        return run_server(argv[2])
    return run_client(argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
