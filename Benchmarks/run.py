#!/usr/bin/env python3
"""Every benchmark row of issue 7, ours and the peer's side by side, in one run on one machine.

Run through Benchmarks/run.sh, which installs the peers' dependencies and builds everything in
release mode first. This script only runs and reports:

    python3 Benchmarks/run.py --bin DIR --peers DIR [--quick] [--only wire,ext,load,shell,rss,limits,events,fleet,tables]

Each row runs ours and the peer alternately for several rounds after a warm-up; the table shows
the medians and the ratio of the medians. The programs measured are the project's own:
wire-bench (ping, query, codec; pinned to CPU 0 by default), sdk-bench (extension tables through
our core), fixture_peer (the libthrift C++ peer: server, clients, the 64-client load), osqueryi
and osqueryd from the same release build.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class BenchError(Exception):
    """A row could not be measured; the other rows still run."""


def fail(message):
    raise BenchError(message)


def note(message):
    sys.stderr.write(f"bench: {message}\n")
    sys.stderr.flush()


class Row:
    """One line of the table: the ratio is always ours / peer; the goal says which way is better.
    `met` is None for rows shown for information only."""

    def __init__(self, name, ours, peer, unit, goal, met, ratio=None, note=""):
        self.name, self.ours, self.peer, self.unit = name, ours, peer, unit
        self.goal, self.met, self.ratio, self.note = goal, met, ratio, note


def fmt(x, digits=None):
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    if digits is None:
        digits = 0 if abs(x) >= 1000 else (1 if abs(x) >= 100 else 2)
    text = f"{x:,.{digits}f}".replace(",", " ")
    return text


def median(xs):
    return statistics.median(xs) if xs else None


def json_line(output, what):
    for line in reversed(output.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    fail(f"{what}: no JSON line in its output:\n{output}")


def run_json(cmd, what, timeout=600, progress=False):
    """Runs a benchmark program and returns its last JSON line; `progress` lets its stderr through."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if progress else subprocess.PIPE, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        fail(f"{what} failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return json_line(p.stdout, what)


class Server:
    """A child process that prints READY once it serves (wire-bench serve, fixture_peer server)."""

    def __init__(self, cmd):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if "READY" not in line:
            self.stop()
            fail(f"{' '.join(cmd)} did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---- rows -------------------------------------------------------------------------------------

def wire_rows(a):
    """ping, query() and codec rows: wire-bench alternates every pair itself, round by round."""
    cmd = [a.wire_bench, "--json", "--rounds", str(3 if a.quick else 7)]
    if a.quick:
        cmd.append("--quick")
    if a.no_pin:
        cmd.append("--no-pin")
    note("wire: ping, query, codec (wire-bench)")
    j = run_json(cmd, "wire-bench", progress=True)
    m = {k: median(v) for k, v in j.items() if isinstance(v, list)}
    pinned = "pinned to CPU 0" if j.get("pinned") else "not pinned"
    rows = []
    ours, raw = m["swift→swift ping"] / 1000, m["raw ping"] / 1000
    rows.append(Row("ping µs: our client → our core", ours, f"raw ping-pong {fmt(raw)}", "µs", "≤ 1.15×",
                    ours / raw <= 1.15, ours / raw, pinned))
    cpp = m["c++→c++ ping"] / 1000
    rows.append(Row("ping µs: our client → our core", ours, f"C++ → C++ {fmt(cpp)}", "µs", "(info)",
                    None, ours / cpp, pinned))
    ours_cpp = m["c++→swift ping"] / 1000
    rows.append(Row("ping µs: C++ client → our core", ours_cpp, f"C++ → C++ {fmt(cpp)}", "µs", "(info)",
                    None, ours_cpp / cpp, pinned))
    q, qp = m["c++←swift rows/s"], m["c++←c++ rows/s"]
    rows.append(Row("query() 1000×6 rows/s: C++ client ← our core", q, f"C++ ← C++ {fmt(qp)}", "rows/s", "≥ 1.5×",
                    q / qp >= 1.5, q / qp, pinned))
    c, cp = m["swift codec MB/s"], m["c++ codec MB/s"]
    rows.append(Row(f"codec encode+decode MB/s ({j['codec_bytes']} B reply)", c, f"libthrift {fmt(cp)}", "MB/s",
                    "≥ 1.0×", c / cp >= 1.0, c / cp, pinned))
    if os.access(a.osqueryd, os.X_OK) and os.access(a.fixture_peer, os.X_OK):
        try:
            rows += osqueryd_ping_rows(a)
        except (BenchError, subprocess.SubprocessError, OSError, ValueError) as e:
            note(f"wire (osqueryd): {e}")
            rows.append(Row("ping: osqueryd not measured", None, "—", "", "—", False, None,
                            str(e).strip().splitlines()[0][:100] if str(e).strip() else type(e).__name__))
    return rows


def osqueryd_ping_rows(a):
    """ping against the real core (osqueryd) instead of the fixture server: our client and the C++
    client, each round beside C++ → C++ (the libthrift fixture server), all on CPU 0 like wire-bench."""
    pings, rounds = (5_000, 3) if a.quick else (20_000, 5)
    pin = [] if a.no_pin else ["taskset", "-c", "0"]
    note(f"wire (osqueryd): ping, {rounds} rounds of {pings}")
    tmp = tempfile.mkdtemp(prefix="osq-ping-")
    daemon = peer = None
    try:
        daemon = Daemon(a, os.path.join(tmp, "d"), pin=pin)
        peer_sock = os.path.join(tmp, "cpp.em")
        peer = Server(pin + [a.fixture_peer, "server", peer_sock])

        def ours():
            out = subprocess.run(pin + [a.wire_bench, "ping", daemon.socket, str(pings)], stdout=subprocess.PIPE,
                                 text=True, check=True, timeout=300).stdout
            return float(out.split()[0]) * 1e9  # "4.7e-05 seconds"

        def cpp(sock):
            return run_json(pin + [a.fixture_peer, "bench-ping", sock, str(pings)], "bench-ping")["ns_per_op"]
        ours(), cpp(daemon.socket), cpp(peer_sock)  # warm-up
        o, c, cc = [], [], []
        for _ in range(rounds):
            o.append(ours())
            c.append(cpp(daemon.socket))
            cc.append(cpp(peer_sock))
    finally:
        for p in (daemon, peer):
            if p is not None:
                p.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    pinned = "not pinned" if a.no_pin else "pinned to CPU 0"
    ours_us, cpp_us, base = median(o) / 1000, median(c) / 1000, median(cc) / 1000
    return [Row("ping µs: our client → osqueryd", ours_us, f"C++ → C++ {fmt(base)}", "µs", "≤ 1.5×",
                ours_us / base <= 1.5, ours_us / base, pinned),
            Row("ping µs: C++ client → osqueryd", cpp_us, f"C++ → C++ {fmt(base)}", "µs", "≤ 1.15×",
                cpp_us / base <= 1.15, cpp_us / base, pinned)]


def extension_rows(a):
    """SELECT * over an extension table through our core: Swift SDK vs PyPI osquery."""
    rows_per_query = 20_000 if a.quick else 100_000
    rounds = 3 if a.quick else 9
    note(f"extension: SELECT * over {rows_per_query} rows (sdk-bench)")
    j = run_json([a.sdk_bench, "--json", str(rows_per_query), str(rounds)], "sdk-bench")
    ours, peer = median(j["swift_rows_per_s"]), median(j["python_rows_per_s"])
    # Each round runs the two tables back to back: the ratio is the median of those pairs, so
    # the machine's drift between rounds (±30 % here) cancels out of it.
    ratio = median([o / p for o, p in zip(j["swift_rows_per_s"], j["python_rows_per_s"])])
    maps = median(j["swift_stringmap_rows_per_s"])
    dicts = median(j["swift_dictionary_rows_per_s"])
    return [Row(f"SELECT * over an extension table ({rows_per_query} rows), rows/s", ours,
                f"PyPI osquery {fmt(peer)}", "rows/s", "≥ 10×, ≥ 1 M rows/s", ratio >= 10 and ours >= 1e6, ratio,
                f"both via our core; ratio: median of {rounds} back-to-back pairs (of the medians: {ours / peer:.2f}×); "
                "RowWriter generate; client: queryReplyRows"),
            Row("SELECT * over an extension table, generate returning [Row], rows/s", dicts, f"PyPI osquery {fmt(peer)}",
                "rows/s", "(info)", None, median([d / p for d, p in zip(j["swift_dictionary_rows_per_s"], j["python_rows_per_s"])]),
                "a dictionary literal per row"),
            Row("SELECT * over an extension table, client decoding into StringMaps, rows/s", maps, "—", "rows/s", "(info)", None, None,
                "client: queryRows")]


def load_rows(a, tmp):
    """64 clients, each its own connection, pings and small queries: our server vs libthrift's.

    Measured twice. Split: the server alone on CPU 0, the 64 client threads on CPU 1, which
    compares the servers' own work. Shared: nothing pinned, so the server competes with the 64
    client threads for the scheduler; a thread-per-connection server (libthrift's) gets more of
    the CPU there simply by having more threads, so that figure is shown for information."""
    clients, seconds = 64, (2 if a.quick else 3)
    rounds = 3 if a.quick else 5
    split = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    rows = []
    peers = {}  # the C++ server's calls/s per mode, beside osqueryd's
    for mode in (["split", "shared"] if split else ["shared"]):
        server_pin = ["taskset", "-c", "0"] if mode == "split" else []
        client_pin = ["taskset", "-c", "1"] if mode == "split" else []
        note(f"load ({mode}): {clients} clients × {seconds} s, {rounds} rounds (fixture_peer bench-load)")
        ours_sock, peer_sock = os.path.join(tmp, f"load-swift-{mode}.em"), os.path.join(tmp, f"load-cpp-{mode}.em")
        ours_srv = peer_srv = None
        try:
            ours_srv = Server(server_pin + [a.wire_bench, "serve", ours_sock])
            peer_srv = Server(server_pin + [a.fixture_peer, "server", peer_sock])

            def once(sock, secs):
                return run_json(client_pin + [a.fixture_peer, "bench-load", sock, str(clients), str(secs)],
                                "bench-load")
            once(ours_sock, 1)
            once(peer_sock, 1)
            ours, peer = [], []
            for _ in range(rounds):
                ours.append(once(ours_sock, seconds))
                peer.append(once(peer_sock, seconds))
        finally:
            for server in (ours_srv, peer_srv):
                if server is not None:
                    server.stop()
        o = median([r["calls_per_s"] for r in ours])
        p = median([r["calls_per_s"] for r in peer])
        oe, pe = sum(r["errors"] for r in ours), sum(r["errors"] for r in peer)
        first = next((r["first_error"] for r in ours if r["first_error"]), "")
        extra = f"errors: ours {oe}, C++ {pe}" + (f" (first: {first})" if first else "")
        if mode == "split":
            rows.append(Row(f"load: {clients} clients, calls/s (server CPU 0, clients CPU 1)", o,
                            f"C++ server {fmt(p)}", "calls/s", "no errors; ≥ 1.0×", oe == 0 and o / p >= 1.0, o / p,
                            extra + "; 3 pings : 1 query of 10 rows"))
        else:
            rows.append(Row(f"load: {clients} clients, calls/s (nothing pinned)", o, f"C++ server {fmt(p)}",
                            "calls/s", "no errors" + ("" if split else "; ≥ 1.0×"),
                            oe == 0 and (split or o / p >= 1.0), o / p, extra))
        peers[mode] = p
    if os.access(a.osqueryd, os.X_OK):
        for mode in (["split", "shared"] if split else ["shared"]):
            try:
                rows.append(osqueryd_load_row(a, tmp, clients, seconds, rounds, mode, peers.get(mode)))
            except (BenchError, subprocess.SubprocessError, OSError) as e:
                note(f"load (osqueryd, {mode}): {e}")
                rows.append(Row("load: osqueryd not measured", None, "—", "", "no errors", False, None,
                                str(e).strip().splitlines()[0][:100] if str(e).strip() else type(e).__name__))
    return rows


# Ten rows from SQLite alone, so the real core's figure is its RPC and SQL path, not a table's.
TEN_ROWS_SQL = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10) SELECT x FROM c"


def osqueryd_load_row(a, tmp, clients, seconds, rounds, mode, peer):
    """The same 64-client load against the real core (osqueryd): split (server CPU 0, clients CPU 1)
    or shared (nothing pinned). Beside it, the libthrift fixture server's figure of the same mode,
    which answers its queries from memory where osqueryd runs SQL."""
    note(f"load (osqueryd, {mode}): {clients} clients × {seconds} s, {rounds} rounds")
    server_pin = ["taskset", "-c", "0"] if mode == "split" else []
    client_pin = ["taskset", "-c", "1"] if mode == "split" else []
    daemon = Daemon(a, os.path.join(tmp, f"load-osqueryd-{mode}"), pin=server_pin)
    try:
        def once(secs):
            return run_json(client_pin + [a.fixture_peer, "bench-load", daemon.socket, str(clients), str(secs),
                                          TEN_ROWS_SQL, "10"], "bench-load osqueryd")
        once(1)
        runs = [once(seconds) for _ in range(rounds)]
    finally:
        daemon.stop()
    o = median([r["calls_per_s"] for r in runs])
    errors = sum(r["errors"] for r in runs)
    first = next((r["first_error"] for r in runs if r["first_error"]), "")
    where = "CPU 0 / CPU 1" if mode == "split" else "nothing pinned"
    return Row(f"load: {clients} clients → osqueryd, calls/s ({where})", o, f"C++ server {fmt(peer)}" if peer else "—",
               "calls/s", "no errors", errors == 0,
               o / peer if peer else None, f"errors: {errors}" + (f" (first: {first})" if first else "") +
               "; osqueryd's queries are 10 rows of SQL, the C++ server's from memory")


def timed(cmd):
    start = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = (time.perf_counter() - start) * 1000
    if p.returncode != 0:
        fail(f"{' '.join(cmd)} exited {p.returncode}")
    return elapsed


def alternate(cmd_a, cmd_b, runs, warmup=5):
    """Alternates the two commands so background load hits both alike; medians in ms."""
    for _ in range(warmup):
        timed(cmd_a)
        timed(cmd_b)
    xa, xb = [], []
    for _ in range(runs):
        xa.append(timed(cmd_a))
        xb.append(timed(cmd_b))
    return median(xa), median(xb)


def shell_rows(a):
    runs = 20 if a.quick else 60
    if not shutil.which("sqlite3") or not shutil.which("ps"):
        fail("sqlite3 and ps are needed (apt-get install sqlite3 procps)")
    note(f"shell: osqueryi start-up and processes, {runs} alternating runs")
    o1, p1 = alternate([a.osqueryi, "SELECT 1"], ["sqlite3", ":memory:", "SELECT 1"], runs)
    o2, p2 = alternate([a.osqueryi, "SELECT * FROM processes"], ["ps", "-eo", "pid,ppid,uid,rss,comm,args"], runs)
    procs = sum(1 for d in os.listdir("/proc") if d.isdigit())
    return [
        Row('osqueryi "SELECT 1" start to exit, ms', o1, f"sqlite3 :memory: {fmt(p1)}", "ms", "≤ 3×", o1 / p1 <= 3,
            o1 / p1, "release link: scripts/build-release.sh"),
        Row("SELECT * FROM processes, ms", o2, f"ps -eo … {fmt(p2)}", "ms", "≤ 1.5×", o2 / p2 <= 1.5, o2 / p2,
            f"{procs} processes"),
    ]


# The ten most used tables (osquery's shipped packs, then fleet use), each with the tool an admin
# reads the same data with. kernel_modules is measured where the kernel has /proc/modules.
TABLE_TOOLS = [
    ("processes", ["ps", "-eo", "pid,ppid,uid,rss,comm,args"]),
    ("users", ["getent", "passwd"]),
    ("deb_packages", ["dpkg-query", "-W"]),
    ("kernel_modules", ["lsmod"]),
    ("mounts", ["findmnt"]),
    ("iptables", ["iptables-save"]),
    ("listening_ports", ["ss", "-ltnup"]),
    ("process_open_sockets", ["ss", "-tanup"]),
    ("interface_addresses", ["ip", "addr"]),
    ("groups", ["getent", "group"]),
    ("block_devices", ["lsblk"]),
]


def alternate_all(cmds, runs, warmup=3):
    """As `alternate`, over any number of commands; their medians in ms."""
    for _ in range(warmup):
        for cmd in cmds:
            timed(cmd)
    xs = [[] for _ in cmds]
    for _ in range(runs):
        for i, cmd in enumerate(cmds):
            xs[i].append(timed(cmd))
    return [median(x) for x in xs]


def table_rows(a, tmp):
    """SELECT * of each table through osqueryi against its admin tool, every figure a whole
    process's wall time (start to exit, output to /dev/null), alternated run by run.

    The goal is on the query's own time: osquery answers from a running osqueryd (schedule,
    distributed queries), where start-up is paid once, and start-up has its own row (`shell`).
    That time is measured as whole processes too: one osqueryi running the statement 1 + K
    times (`--query_file`) against one running it once, (T(1+K) - T(1)) / K, so it includes
    the JSON output. The whole-process ratio is shown beside it."""
    runs = 10 if a.quick else 30
    repeat = 10
    rows = []
    note(f"tables: SELECT * vs the admin's tool, {runs} alternating runs each")
    for table, tool in TABLE_TOOLS:
        name = f"SELECT * FROM {table}, ms (query in osqueryi)"
        if shutil.which(tool[0]) is None:
            rows.append(Row(name, None, f"{tool[0]}: not installed", "ms", "≤ 1.5×", None, None, "not measured"))
            continue
        if subprocess.run(tool, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
            rows.append(Row(name, None, f"{' '.join(tool)} fails here", "ms", "≤ 1.5×", None, None, "not measured"))
            continue
        sql = f"SELECT * FROM {table}"
        script = os.path.join(tmp, f"tables-{table}.sql")
        with open(script, "w") as f:
            f.write(f"{sql};\n" * (1 + repeat))
        once = [a.osqueryi, "--json", sql]
        many = [a.osqueryi, "--json", "--query_file", script]
        o, p, m = alternate_all([once, tool, many], runs)
        query = max(m - o, 0) / repeat
        out = subprocess.run(once, capture_output=True, text=True, timeout=60).stdout
        count = len(json.loads(out)) if out.strip() else 0
        rows.append(Row(name, query, f"{' '.join(tool)} {fmt(p)}", "ms", "≤ 1.5×", query / p <= 1.5, query / p,
                        f"{count} rows; whole osqueryi process {fmt(o)} ms ({o / p:.2f}×)"))
    return rows


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def measured_pid(pid):
    """The daemon's worker when it forked one (watchdog), else the daemon itself."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        return pid
    for child in children:
        try:
            with open(f"/proc/{child}/comm") as f:
                if f.read().strip().startswith("osquery"):
                    return child
        except OSError:
            pass
    return pid


def registered(a, socket_path):
    p = subprocess.run([a.fixture_peer, "extensions", socket_path], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    if p.returncode != 0:
        return None
    try:
        return len(json_line(p.stdout, "extensions"))
    except (ValueError, BenchError):
        return None


class Daemon:
    """osqueryd with the flags of the RSS row, in its own directory; `socket` answers once started."""

    def __init__(self, a, d, pin=()):
        os.makedirs(d)
        config = os.path.join(d, "osquery.conf")
        with open(config, "w") as f:
            f.write("{}\n")
        self.socket = os.path.join(d, "em")
        cmd = list(pin) + [a.osqueryd, "--ephemeral", "--disable_watchdog", "--disable_database", "--config_path", config,
               "--logger_path", d, "--pidfile", os.path.join(d, "pid"), "--extensions_socket", self.socket]
        self.log = open(os.path.join(d, "osqueryd.log"), "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while registered(a, self.socket) is None:
            if self.proc.poll() is not None:
                self.log.flush()
                text = open(self.log.name).read()[-2000:]
                self.log.close()
                fail(f"osqueryd exited {self.proc.returncode}: {text}")
            if time.monotonic() > deadline:
                self.stop()
                fail("osqueryd's extension socket never answered")
            time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def rss_once(a, tmp, k):
    daemon = Daemon(a, os.path.join(tmp, f"rss{k}"))
    sock = daemon.socket
    extensions = []
    try:
        time.sleep(3)  # idle: let start-up work settle
        idle = rss_kib(measured_pid(daemon.proc.pid))
        for i in range(5):
            extensions.append(subprocess.Popen(
                [a.sdk_bench, "extension", f"rss_ext_{i}", "10", "--socket", sock, "--timeout", "3", "--interval", "3"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 30
        while (registered(a, sock) or 0) < 5:
            if time.monotonic() > deadline:
                fail(f"only {registered(a, sock)} of 5 extensions registered with osqueryd")
            time.sleep(0.1)
        # One query over every extension table, as a core serving them would run.
        for i in range(5):
            q = run_json([a.fixture_peer, "query", sock, f"SELECT * FROM rss_ext_{i}_rows"], "query")
            if q["code"] != 0 or len(q["rows"]) != 10:
                fail(f"SELECT * FROM rss_ext_{i}_rows through osqueryd: {q['code']} {q['message']}")
        time.sleep(2)
        loaded = rss_kib(measured_pid(daemon.proc.pid))
        return idle, loaded
    finally:
        for e in extensions:
            e.kill()
        daemon.stop()
        for e in extensions:
            e.wait()


def rss_rows(a, tmp):
    rounds = 1 if a.quick else 3
    note(f"rss: osqueryd idle, then with 5 SDK extensions registered ({rounds} rounds)")
    samples = [rss_once(a, tmp, k) for k in range(rounds)]
    idle = median([s[0] for s in samples]) / 1024
    loaded = median([s[1] for s in samples]) / 1024
    return [
        Row("osqueryd RSS idle, MB", idle, "—", "MiB", "≤ 25 MB", idle <= 25, None, "VmRSS, static Swift runtime"),
        Row("osqueryd RSS with 5 extensions registered, MB", loaded, "—", "MiB", "≤ 40 MB", loaded <= 40, None,
            "after one SELECT * over each extension table"),
    ]


# ---- memory under hostile clients (issue 14) ---------------------------------------------------

MESSAGE_LIMIT_MIB = 100  # --extensions_max_message_size's default


def thrift_call(name, seqid, string_field_length):
    """A strict-header call whose field 1 is a string of `string_field_length` bytes; the header
    and the string's length only (the caller sends the bytes)."""
    import struct
    n = name.encode()
    return (struct.pack(">Ii", 0x80010001, len(n)) + n + struct.pack(">i", seqid)
            + struct.pack(">bhi", 11, 1, string_field_length))


def query_call(sql, seqid):
    q = sql.encode()
    return thrift_call("query", seqid, len(q)) + q + b"\x00"


def peak_rss_while(pid, seconds, step=None):
    """The highest VmRSS (KiB) sampled over `seconds`, running `step()` between samples."""
    peak = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if step is not None:
            step()
        peak = max(peak, rss_kib(pid) or 0)
        time.sleep(0.05)
    return peak


def still_serves(a, sock):
    q = run_json([a.fixture_peer, "query", sock, "SELECT 1 AS one"], "query")
    if q["code"] != 0 or q["rows"] != [{"one": "1"}]:
        fail(f"osqueryd stopped answering after the hostile clients: {q}")


def hostile_clients(sock, count):
    import socket as so
    clients = []
    for _ in range(count):
        c = so.socket(so.AF_UNIX, so.SOCK_STREAM)
        c.connect(sock)
        c.setblocking(False)
        clients.append(c)
    return clients


def send_some(clients, payloads, sent, goal):
    """Sends what each client's socket takes now, up to `goal` bytes each."""
    for i, c in enumerate(clients):
        if sent[i] >= goal:
            continue
        try:
            off = sent[i] % len(payloads[i])
            sent[i] += c.send(payloads[i][off:off + (1 << 20)])
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            sent[i] = goal  # closed by the server


def limits_rows(a, tmp):
    clients_n = 64
    note(f"limits: osqueryd idle, under {clients_n} clients stalled mid-message, under a {clients_n}-client pipelining flood")
    daemon = Daemon(a, os.path.join(tmp, "limits"))
    sock = daemon.socket
    try:
        time.sleep(3)
        pid = measured_pid(daemon.proc.pid)
        idle = rss_kib(pid) / 1024
        goal = 2 * idle + MESSAGE_LIMIT_MIB

        # Each client announces a 99 MiB string and sends up to half of it, then stalls.
        declared = 99 << 20
        stalled = hostile_clients(sock, clients_n)
        for c in stalled:
            c.setblocking(True)
            c.sendall(thrift_call("query", 1, declared))
            c.setblocking(False)
        chunk = b"A" * (1 << 20)
        sent = [0] * clients_n
        stalled_peak = peak_rss_while(pid, 8, lambda: send_some(stalled, [chunk] * clients_n, sent, declared // 2)) / 1024
        stalled_sent = sum(sent) / (1 << 20)
        still_serves(a, sock)
        for c in stalled:
            c.close()
        time.sleep(2)

        # Each client pipelines 40 queries of ~9 MB results and never reads.
        sql = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) "
               "SELECT x, printf('%050d', x) AS pad FROM c")
        calls = b"".join(query_call(sql, i) for i in range(40))
        flood = hostile_clients(sock, clients_n)
        sent = [0] * clients_n
        flood_peak = peak_rss_while(pid, 15, lambda: send_some(flood, [calls] * clients_n, sent, len(calls))) / 1024
        still_serves(a, sock)
        for c in flood:
            c.close()
    finally:
        daemon.stop()
    return [
        Row("osqueryd RSS idle (extensions socket), MB", idle, "—", "MiB", "—", None, None, "VmRSS 3 s after start"),
        Row(f"osqueryd peak RSS, {clients_n} clients stalled mid-message, MB", stalled_peak, "—", "MiB",
            f"≤ {fmt(goal)} (2× idle + {MESSAGE_LIMIT_MIB})", stalled_peak <= goal, None,
            f"each announced 99 MiB; {fmt(stalled_sent)} MiB taken in all"),
        Row(f"osqueryd peak RSS, {clients_n}-client pipelining flood, MB", flood_peak, "—", "MiB",
            f"≤ {fmt(goal)} (2× idle + {MESSAGE_LIMIT_MIB})", flood_peak <= goal, None,
            "40 × ~9 MB queries each, never read"),
    ]


# ---- report -----------------------------------------------------------------------------------

def events_rows(a, tmp):
    """events (issue 17): FIM hashing vs sha256sum, a write storm, SELECT over buffered events."""
    files = 200 if a.quick else 1000
    storm = 20000 if a.quick else 100000
    note(f"events: hashing {files} files, a storm of {storm} files, SELECT over 50 000 buffered events")
    hashdir = os.path.join(tmp, "fim-hash")
    os.makedirs(hashdir)
    for i in range(files):
        with open(os.path.join(hashdir, f"f{i:04d}"), "wb") as f:
            f.write(os.urandom(256 * 1024))
    names = sorted(os.path.join(hashdir, n) for n in os.listdir(hashdir))
    total = sum(os.path.getsize(n) for n in names)
    ours, theirs = [], []
    for _ in range(3 if a.quick else 7):
        ours.append(run_json([a.fim_bench, "hash", hashdir], "fim-bench hash")["mb_per_s"])
        theirs.append(total / 1e6 / (timed(["sha256sum"] + names) / 1000))
    o, t = median(ours), median(theirs)
    s = run_json([a.fim_bench, "storm", os.path.join(tmp, "fim-storm"), str(storm)], "fim-bench storm", timeout=900)
    q = run_json([a.fim_bench, "select", os.path.join(tmp, "fim-select"), "50000"], "fim-bench select", timeout=900)
    rss_goal = 2 * s["rss_idle_kib"] + 50000 * 1  # ≤ 2× idle + events_max rows (~1 KiB each)
    return [
        Row(f"FIM hashing, md5+sha1+sha256 in one read, {files} files, MB/s", o, f"sha256sum {fmt(t)}", "MB/s", "≥ 0.9×",
            o / t >= 0.9, o / t, "sha256sum computes one digest"),
        Row(f"write storm: {storm} files, file_events/s", s["events_per_s"], "—", "events/s", "0 lost below the queue limit",
            s["lost"] == 0 or s["queue_overflows"] > 0, None,
            f"lost {s['lost']}, all in {s['queue_overflows']} counted inotify queue overflows" if s["lost"] else "0 lost; buffered in the store"),
        Row("RSS during the storm, KiB", s["rss_peak_kib"], f"idle {s['rss_idle_kib']}", "KiB", "≤ 2× idle + events_max rows",
            s["rss_peak_kib"] <= rss_goal, s["rss_peak_kib"] / s["rss_idle_kib"], "events_max rows counted at 1 KiB"),
        Row("SELECT * FROM file_events over 50 000 buffered events, ms", q["ours_ms"], f"plain SQLite scan {fmt(q['plain_ms'])}",
            "ms", "≤ 2×", q["ours_ms"] / q["plain_ms"] <= 2, q["ours_ms"] / q["plain_ms"], "same rows, same store"),
    ] + audit_rows(a, tmp)


def audit_rows(a, tmp):
    """audit events (issue 19): an exec storm at 1 000 execs/s for 10 s through the audit publisher,
    then the same storm with Debian's auditd as the audit daemon (the peer; the two cannot hold the
    audit netlink at once, so they take turns, three rounds, medians). auditd's CPU is its utime+stime
    from /proc; ours is the bench process's (publisher, parser, rows, store writes) without its own
    count queries. The kernel's audit cost is neither's."""
    if os.geteuid() != 0:
        note("audit events: skipped (needs root for NETLINK_AUDIT)")
        return []
    seconds = 5 if a.quick else 10
    rounds = 1 if a.quick else 3
    peer = shutil.which("auditd") and shutil.which("auditctl")
    if not peer:
        note("audit events: no auditd peer row (auditd is not installed: apt-get install auditd)")
    ours, theirs = [], []
    for r in range(rounds):
        ours.append(run_json([a.fim_bench, "exec", os.path.join(tmp, f"audit-exec-{r}"), "1000", str(seconds)], "fim-bench exec",
                             timeout=300))
        if peer:
            theirs.append(run_json([a.fim_bench, "exec-auditd", os.path.join(tmp, f"audit-auditd-{r}"), "1000", str(seconds)],
                                   "fim-bench exec-auditd", timeout=300))

    def mid(runs, key):
        return median([x[key] for x in runs])

    share, cpu = mid(ours, "share"), mid(ours, "cpu_us_per_event")
    p_share = mid(theirs, "share") if theirs else None
    p_cpu = mid(theirs, "cpu_us_per_event") if theirs else None
    e = ours[len(ours) // 2]
    rows = [
        Row(f"exec storm, 1 000 execs/s for {seconds} s: share captured in process_events, %", 100 * share,
            f"auditd {fmt(100 * p_share)}" if theirs else "—", "%", "100 %", share >= 1.0, None,
            f"{e['execs']} execs, kernel lost {max(x['kernel_lost'] for x in ours)}"
            + (f"; auditd: kernel lost {max(x['kernel_lost'] for x in theirs)}" if theirs else "")),
        Row("exec storm: daemon CPU per event, µs", cpu, f"auditd {fmt(p_cpu)}" if theirs else "—", "µs", "≤ 30", cpu <= 30,
            cpu / p_cpu if p_cpu else None,
            f"median of {rounds}; reader, parser, rows and store writes"
            + ("; auditd: Debian's auditd.conf (ENRICHED log), an execve/execveat rule" if theirs else "")),
        Row("exec storm: RSS, KiB", mid(ours, "rss_peak_kib"), f"auditd {fmt(mid(theirs, 'rss_peak_kib'))}" if theirs else "—", "KiB", "—",
            None, None, f"idle {fmt(mid(ours, 'rss_idle_kib'))}" + (f", auditd idle {fmt(mid(theirs, 'rss_idle_kib'))}" if theirs else "")),
    ]
    return rows


def cpu_seconds(pid):
    """User + system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fleet_rows(a, tmp):
    """Fleet scale by simulation (issue 20): N real osqueryd enrolled with the test suite's TLS
    server (Tests/Peers/tls/tls_server.py) on loopback, each logging 400 differential lines a second (200 rows
    added, 200 removed) with gzip; per daemon: lines/s delivered, requests/s, CPU and RSS; on the wire: bytes
    per 1 000 result lines against osquery's JSON lines format; and a projection to 100 000 hosts."""
    daemons = 4 if a.quick else 10
    seconds = 10 if a.quick else 30
    rows_per_run = 200
    note(f"fleet: {daemons} osqueryd against the TLS test server for {seconds} s, {2 * rows_per_run} lines/s each, gzip")
    script = os.path.join(REPO, "Tests", "Peers", "tls", "tls_server.py")
    certs = os.path.join(tmp, "fleet-certs")
    subprocess.run([sys.executable, script, "certs", certs], check=True, stdout=subprocess.DEVNULL)
    state = os.path.join(tmp, "fleet-server")
    os.makedirs(state)
    sql = (f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows_per_run}) "
           "SELECT x, 'host-' || x AS name, 'ok' AS status, random() AS r FROM c")
    offered = 2 * rows_per_run  # every row changes every run: one "added" and one "removed" line
    with open(os.path.join(state, "config.json"), "w") as f:
        json.dump({"schedule": {"fleet": {"query": sql, "interval": 1}}}, f)
    server = subprocess.Popen([sys.executable, script, "serve", state, "--port", "0", "--cert", os.path.join(certs, "server.pem"),
                               "--key", os.path.join(certs, "server.key"), "--secret", "bench"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = int(server.stdout.readline())
    procs = []
    try:
        for k in range(daemons):
            d = os.path.join(tmp, f"fleet{k}")
            os.makedirs(d)
            with open(os.path.join(d, "secret"), "w") as f:
                f.write("bench")
            cmd = [a.osqueryd, "--disable_watchdog", "--database_path", os.path.join(d, "db"), "--pidfile", os.path.join(d, "pid"),
                   "--extensions_socket", os.path.join(d, "em"), "--host_identifier", "specified", "--specified_identifier", f"bench-{k}",
                   "--tls_hostname", f"localhost:{port}", "--tls_server_certs", os.path.join(certs, "ca.pem"),
                   "--enroll_secret_path", os.path.join(d, "secret"), "--enroll_tls_endpoint", "/api/osquery/enroll",
                   "--config_plugin", "tls", "--config_tls_endpoint", "/api/osquery/config", "--config_refresh", "10",
                   "--logger_plugin", "tls", "--logger_tls_endpoint", "/api/osquery/log", "--logger_tls_period", "1",
                   "--logger_tls_compress", "--disable_distributed=false", "--distributed_plugin", "tls",
                   "--distributed_interval", "10", "--distributed_tls_read_endpoint", "/api/osquery/distributed/read",
                   "--distributed_tls_write_endpoint", "/api/osquery/distributed/write",
                   "--cloud_metadata_address", "127.0.0.1:1"]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "stderr"), "w")))
        # Measure once every daemon has enrolled and delivered its first lines.
        deadline = time.monotonic() + 60
        def enrolled():
            try:
                return sum(1 for _ in open(os.path.join(state, "enroll.jsonl")))
            except OSError:
                return 0
        while enrolled() < daemons or not os.path.exists(os.path.join(state, "log-result.jsonl")):
            if time.monotonic() > deadline:
                raise BenchError(f"only {enrolled()} of {daemons} daemons enrolled within 60 s")
            time.sleep(0.2)
        time.sleep(3)

        def snapshot():
            lines = sum(1 for _ in open(os.path.join(state, "log-result.jsonl")))
            reqs = [json.loads(l) for l in open(os.path.join(state, "requests.jsonl"))]
            return lines, reqs

        lines0, reqs0 = snapshot()
        cpu0 = [cpu_seconds(p.pid) for p in procs]
        rss = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            rss.append(max(rss_kib(p.pid) or 0 for p in procs))
            time.sleep(1)
        elapsed = time.monotonic() - t0
        cpu = [cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0)]
        lines1, reqs1 = snapshot()
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        server.kill()
        server.wait()
    reqs = reqs1[len(reqs0):]
    logs = [r for r in reqs if r["path"].endswith("/log")]
    lines = lines1 - lines0
    if lines == 0 or not logs:
        raise BenchError("no result lines delivered while measuring")
    per_daemon = lines / daemons / elapsed
    wire = sum(r["wire_bytes"] for r in logs) / lines * 1000
    plain = sum(r["json_bytes"] for r in logs) / lines * 1000
    req_rate = len(reqs) / daemons / elapsed
    cpu_ms = statistics.mean(cpu) / elapsed * 1000
    us_per_line = statistics.mean(cpu) / (lines / daemons) * 1e6
    # Fleet's flagfile intervals (config_refresh, logger_tls_period, distributed_interval: 10 s
    # each) make 0.3 requests/s per host; result lines at 1 line/s per host on average.
    hosts = 100_000
    projected_rps = hosts * 0.3
    projected_mbps = hosts * 1 * wire / 1000 / 1e6
    return [
        Row(f"TLS logger: result lines/s delivered by one daemon ({daemons} daemons)", per_daemon, f"offered {offered}/s",
            "lines/s", "all offered", per_daemon >= 0.95 * offered, per_daemon / offered, "gzip, logger_tls_period 1"),
        Row("bytes on the wire per 1 000 result lines, gzip", wire, f"osquery's JSON lines {fmt(plain)}", "bytes", "≥ 5× smaller",
            plain / wire >= 5, plain / wire, "same lines, osquery's format without gzip"),
        Row("daemon CPU per delivered line, µs", us_per_line, "—", "µs", "—", None, None,
            f"{fmt(cpu_ms)} ms CPU/s per daemon; peak RSS {fmt(max(rss) // 1024)} MiB"),
        Row("requests/s per daemon", req_rate, "—", "req/s", "—", None, None, "enroll, config, log, distributed"),
        Row("projection: 100 000 hosts at Fleet's intervals (10 s)", projected_rps, "—", "req/s at the server", "—", None, None,
            f"{fmt(projected_mbps)} MB/s of gzip logs at 1 line/s per host"),
    ]


def machine():
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 1024 / 1024
    load = open("/proc/loadavg").read().split()[:3]
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), {mem:.1f} GiB, load average {' '.join(load)}, kernel {os.uname().release}"


def print_table(rows):
    head = ["row", "ours", "peer", "ratio", "goal", "result", "notes"]
    cells = [[r.name, fmt(r.ours), r.peer, "—" if r.ratio is None else f"{r.ratio:.2f}×", r.goal,
              "info" if r.met is None else ("met" if r.met else ("FAILED" if r.ours is None else "MISSED")), r.note] for r in rows]
    widths = [max(len(head[i]), *(len(c[i]) for c in cells)) for i in range(len(head))]
    def line(cs):
        return "| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(cs)) + " |"
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for c in cells:
        print(line(c))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="release bin directory (wire-bench, sdk-bench, osqueryi, osqueryd)")
    ap.add_argument("--peers", default=os.path.join(REPO, ".build-peers"))
    ap.add_argument("--quick", action="store_true", help="fewer rounds and shorter loads")
    ap.add_argument("--no-pin", action="store_true", help="do not pin the wire rows to CPU 0")
    ap.add_argument("--only", default="wire,ext,load,shell,rss,limits,events,fleet,tables", help="comma-separated subset")
    a = ap.parse_args()
    a.wire_bench = os.path.join(a.bin, "wire-bench")
    a.sdk_bench = os.path.join(a.bin, "sdk-bench")
    a.osqueryi = os.path.join(a.bin, "osqueryi")
    a.osqueryd = os.path.join(a.bin, "osqueryd")
    a.fim_bench = os.path.join(a.bin, "fim-bench")  # events (issue 17)
    a.fixture_peer = os.path.join(a.peers, "cpp", "fixture_peer")
    only = set(a.only.split(","))
    needs = {"wire": [a.wire_bench], "ext": [a.sdk_bench], "load": [a.wire_bench, a.fixture_peer],
             "shell": [a.osqueryi], "rss": [a.osqueryd, a.sdk_bench, a.fixture_peer],
             "limits": [a.osqueryd, a.fixture_peer], "events": [a.fim_bench], "fleet": [a.osqueryd],
             "tables": [a.osqueryi]}
    if not only <= set(needs):
        note(f"--only takes a comma-separated subset of {','.join(needs)}")
        sys.exit(2)
    for tool in sorted({t for part in only for t in needs[part]}):
        if not os.access(tool, os.X_OK):
            note(f"{tool} is missing: run Benchmarks/run.sh (it builds everything)")
            sys.exit(1)
    started = time.monotonic()
    print(f"machine: {machine()}")
    print(f"processes: {sum(1 for d in os.listdir('/proc') if d.isdigit())}; "
          f"{'quick run' if a.quick else 'full run'}; medians of alternating rounds after a warm-up")
    sys.stdout.flush()
    rows = []
    failed = []
    tmp = tempfile.mkdtemp(prefix="osq-bench-")
    sections = [("wire", lambda: wire_rows(a)), ("ext", lambda: extension_rows(a)), ("load", lambda: load_rows(a, tmp)),
                ("shell", lambda: shell_rows(a)), ("rss", lambda: rss_rows(a, tmp)),
                ("limits", lambda: limits_rows(a, tmp)), ("events", lambda: events_rows(a, tmp)),
                ("fleet", lambda: fleet_rows(a, tmp)), ("tables", lambda: table_rows(a, tmp))]
    try:
        for name, measure in sections:
            if name not in only:
                continue
            try:
                rows += measure()
            except (BenchError, subprocess.SubprocessError, OSError, KeyError, ValueError) as e:
                # One broken row must not cost the others: report it in the table and go on.
                note(f"{name}: {e}")
                failed.append(name)
                first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                rows.append(Row(f"{name}: not measured", None, "—", "", "—", False, None, first_line[:100]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average at the end: {' '.join(open('/proc/loadavg').read().split()[:3])}; "
          f"run time {time.monotonic() - started:.0f} s")
    print()
    print_table(rows)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
