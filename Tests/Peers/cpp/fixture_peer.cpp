// C++ (Apache Thrift 0.17, libthrift) peer for the cross-language fixture of Tests/Peers/FIXTURE.md.
//
//   fixture_peer server SOCKET_PATH
//   fixture_peer client SOCKET_PATH
//   fixture_peer bench-ping SOCKET_PATH N
//   fixture_peer bench-query SOCKET_PATH SQL N
//   fixture_peer bench-codec N
//   fixture_peer bench-load SOCKET_PATH CLIENTS SECONDS [SQL ROWS]   (CLIENTS threads, pings + queries)
//   fixture_peer query SOCKET_PATH SQL        (one JSON line: code, message, rows)
//   fixture_peer extensions SOCKET_PATH       (one JSON line: uuid -> extension info)
//
// Built by scripts/build-peers.sh against the code `thrift --gen cpp idl/osquery.thrift` generates.
// The server uses osquery's own stack: TServerSocket(path) + TBufferedTransportFactory +
// TBinaryProtocolFactory in a TThreadedServer. The client uses TSocket(path) in a
// TBufferedTransport with TBinaryProtocol, as osquery's ExtensionClientCore does.
// std::string is bytes, so invalid UTF-8 passes through untouched.

#include "ExtensionManager.h"

#include <thrift/TApplicationException.h>
#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/server/TServer.h>
#include <thrift/server/TThreadedServer.h>
#include <thrift/transport/TBufferTransports.h>
#include <thrift/transport/TServerSocket.h>
#include <thrift/transport/TSocket.h>

#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <atomic>
#include <mutex>
#include <vector>

using namespace osquery::extensions;
using apache::thrift::TException;
using apache::thrift::protocol::TBinaryProtocol;
using apache::thrift::protocol::TBinaryProtocolFactory;
using apache::thrift::protocol::TProtocol;
using apache::thrift::server::TServerEventHandler;
using apache::thrift::server::TThreadedServer;
using apache::thrift::transport::TBufferedTransport;
using apache::thrift::transport::TBufferedTransportFactory;
using apache::thrift::transport::TMemoryBuffer;
using apache::thrift::transport::TServerSocket;
using apache::thrift::transport::TSocket;
using apache::thrift::transport::TTransport;

namespace {

constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();
constexpr int kClientTimeoutMs = 120 * 1000;

using Row = std::map<std::string, std::string>;
using Rows = std::vector<Row>;

// ---------------------------------------------------------------------------------------------
// Fixture values

Row fixtureRow(long long i) {
  return Row{
      {"i", std::to_string(i)},
      {"name", "row-" + std::to_string(i)},
      {"path", "/proc/" + std::to_string(i) + "/status"},
      {"zero", ""},
      {"unicode", "ünïcødé-✓"},
      {"neg", std::to_string(-i)},
  };
}

Rows fixtureRows(long long n) {
  Rows rows;
  rows.reserve(n > 0 ? static_cast<size_t>(n) : 0);
  for (long long i = 0; i < n; ++i) rows.push_back(fixtureRow(i));
  return rows;
}

ExtensionStatus makeStatus(int32_t code, const std::string& message, int64_t uuid) {
  ExtensionStatus s;
  s.__set_code(code);
  s.__set_message(message);
  s.__set_uuid(uuid);
  return s;
}

ExtensionResponse makeResponse(const ExtensionStatus& status, const Rows& rows) {
  ExtensionResponse r;
  r.__set_status(status);
  r.__set_response(rows);
  return r;
}

InternalExtensionInfo makeInfo(const std::string& name, const std::string& version,
                               const std::string& sdk, const std::string& minSdk) {
  InternalExtensionInfo i;
  i.__set_name(name);
  i.__set_version(version);
  i.__set_sdk_version(sdk);
  i.__set_min_sdk_version(minSdk);
  return i;
}

InternalOptionInfo makeOption(const std::string& value, const std::string& def,
                              const std::string& type) {
  InternalOptionInfo o;
  o.__set_value(value);
  o.__set_default_value(def);
  o.__set_type(type);
  return o;
}

InternalExtensionList fixtureExtensions() {
  return InternalExtensionList{
      {1, makeInfo("alpha", "1.0.0", "1.7.7", "1.0.0")},
      {65535, makeInfo("ünïcødé", "", "", "")},
      {kI64Max, makeInfo("max", "v", "s", "m")},
      {kI64Min, makeInfo("min", "", "", "")},
  };
}

InternalOptionList fixtureOptions() {
  return InternalOptionList{
      {"extensions_socket", makeOption("/fixture/osquery.em", "/var/osquery/osquery.em", "string")},
      {"verbose", makeOption("false", "false", "bool")},
      {"empty", makeOption("", "", "")},
  };
}

std::string hexOf(const std::string& s) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

// std::map<std::string, ...> iterates in raw-byte order: char_traits<char> compares as
// unsigned char, which is exactly FIXTURE.md's "sorted by raw bytes (unsigned)".
std::string canon(const InternalExtensionInfo& info, const ExtensionRegistry& registry) {
  std::string out = hexOf(info.name) + "," + hexOf(info.version) + "," + hexOf(info.sdk_version) +
                    "," + hexOf(info.min_sdk_version);
  for (const auto& reg : registry) {
    out += "|" + hexOf(reg.first) + ":";
    bool firstPlugin = true;
    for (const auto& plugin : reg.second) {
      if (!firstPlugin) out += "&";
      firstPlugin = false;
      out += hexOf(plugin.first) + "=";
      for (const auto& route : plugin.second) {
        out += "{";
        bool firstKey = true;
        for (const auto& kv : route) {
          if (!firstKey) out += ";";
          firstKey = false;
          out += hexOf(kv.first) + "=" + hexOf(kv.second);
        }
        out += "}";
      }
    }
  }
  return out;
}

int64_t routeCount(const ExtensionRegistry& registry) {
  int64_t n = 0;
  for (const auto& reg : registry)
    for (const auto& plugin : reg.second) n += static_cast<int64_t>(plugin.second.size());
  return n;
}

bool allDigits(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Server

std::string gSocketPath;

class FixtureHandler : virtual public ExtensionManagerIf {
 public:
  void ping(ExtensionStatus& r) override { r = makeStatus(0, "pong", kI64Max); }

  void call(ExtensionResponse& r, const std::string& registry, const std::string& item,
            const ExtensionPluginRequest& request) override {
    if (registry == "fail") {
      r = makeResponse(makeStatus(2, "failed: " + item, 0), {});
    } else if (registry == "sparse") {
      // C++ always writes every field: the "sparse" status travels as {0, "", 0} and [].
      ExtensionStatus s;
      s.__set_code(0);
      r = ExtensionResponse();
      r.__set_status(s);
    } else if (request.count("rows")) {
      const std::string& n = request.at("rows");
      if (!allDigits(n)) throw std::invalid_argument("rows must be a decimal number");
      r = makeResponse(makeStatus(0, "OK", 0), fixtureRows(std::stoll(n)));
    } else {
      Rows rows{Row(request.begin(), request.end()), Row{{"registry", registry}, {"item", item}}};
      r = makeResponse(makeStatus(0, "OK", kI64Min), rows);
    }
  }

  void shutdown() override {
    // Reply first (the processor writes it after we return), then leave.
    std::thread([] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      std::fflush(stdout);
      if (!gSocketPath.empty()) ::unlink(gSocketPath.c_str());
      _exit(0);
    }).detach();
  }

  void extensions(InternalExtensionList& r) override { r = fixtureExtensions(); }

  void options(InternalOptionList& r) override { r = fixtureOptions(); }

  void registerExtension(ExtensionStatus& r, const InternalExtensionInfo& info,
                         const ExtensionRegistry& registry) override {
    r = makeStatus(0, canon(info, registry), routeCount(registry));
  }

  void deregisterExtension(ExtensionStatus& r, const ExtensionRouteUUID uuid) override {
    r = makeStatus(0, std::to_string(uuid), uuid);
  }

  void query(ExtensionResponse& r, const std::string& sql) override {
    if (sql.compare(0, 5, "rows:") == 0 && allDigits(sql.substr(5))) {
      r = makeResponse(makeStatus(0, "OK", 0), fixtureRows(std::stoll(sql.substr(5))));
    } else if (sql == "error") {
      r = makeResponse(makeStatus(1, "near \"error\": syntax error", 0), {});
    } else {
      r = makeResponse(makeStatus(0, "OK", 0), Rows{Row{{"sql", sql}}});
    }
  }

  void getQueryColumns(ExtensionResponse& r, const std::string& sql) override {
    r = makeResponse(makeStatus(0, "OK", 0), Rows{Row{{sql, "TEXT"}}, Row{{"n", "INTEGER"}}});
  }
};

class ReadyOnListen : public TServerEventHandler {
 public:
  void preServe() override {  // called once the server socket is listening
    std::printf("READY\n");
    std::fflush(stdout);
  }
};

int runServer(const std::string& path) {
  ::unlink(path.c_str());  // a stale socket file would make bind fail
  gSocketPath = path;
  auto handler = std::make_shared<FixtureHandler>();
  auto processor = std::make_shared<ExtensionManagerProcessor>(handler);
  auto serverSocket = std::make_shared<TServerSocket>(path);
  TThreadedServer server(processor, serverSocket, std::make_shared<TBufferedTransportFactory>(),
                         std::make_shared<TBinaryProtocolFactory>());
  server.setServerEventHandler(std::make_shared<ReadyOnListen>());
  try {
    server.serve();
  } catch (const TException& e) {
    std::fprintf(stderr, "fixture_peer server: %s\n", e.what());
    return 1;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Client

struct CheckFailed : std::runtime_error {
  explicit CheckFailed(const std::string& m) : std::runtime_error(m) {}
};

std::string show(const std::string& s, size_t limit = 120) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (out.size() > limit) {
      out += "...";
      break;
    }
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out + "\"";
}

template <typename T>
void expectEq(const std::string& what, const T& exp, const T& act) {
  if (!(exp == act)) {
    std::ostringstream os;
    os << what << ": expected " << exp << ", got " << act;
    throw CheckFailed(os.str());
  }
}

void expectEq(const std::string& what, const std::string& exp, const std::string& act) {
  if (exp != act) throw CheckFailed(what + ": expected " + show(exp) + ", got " + show(act));
}

void expectRow(const std::string& what, const Row& exp, const Row& act) {
  if (exp.size() != act.size()) {
    std::string missing, extra;
    for (const auto& kv : exp)
      if (!act.count(kv.first) && missing.size() < 200) missing += " " + show(kv.first, 40);
    for (const auto& kv : act)
      if (!exp.count(kv.first) && extra.size() < 200) extra += " " + show(kv.first, 40);
    throw CheckFailed(what + ": expected " + std::to_string(exp.size()) + " entries, got " +
                      std::to_string(act.size()) +
                      (missing.empty() ? "" : " (missing" + missing + ")") +
                      (extra.empty() ? "" : " (extra" + extra + ")"));
  }
  for (const auto& kv : exp) {
    auto it = act.find(kv.first);
    if (it == act.end()) throw CheckFailed(what + ": missing key " + show(kv.first));
    expectEq(what + "[" + show(kv.first, 40) + "]", kv.second, it->second);
  }
}

void expectRows(const Rows& exp, const Rows& act) {
  if (exp.size() != act.size())
    throw CheckFailed("response: expected " + std::to_string(exp.size()) + " rows, got " +
                      std::to_string(act.size()));
  for (size_t i = 0; i < exp.size(); ++i)
    expectRow("response[" + std::to_string(i) + "]", exp[i], act[i]);
}

void expectStatus(const ExtensionStatus& s, int32_t code, const std::string& message,
                  int64_t uuid) {
  expectEq("status.code", code, s.code);
  expectEq("status.message", message, s.message);
  expectEq("status.uuid", uuid, s.uuid);
}

void expectResponse(const ExtensionResponse& r, int32_t code, const std::string& message,
                    int64_t uuid, const Rows& rows) {
  expectStatus(r.status, code, message, uuid);
  expectRows(rows, r.response);
}

void expectExtensions(const InternalExtensionList& act) {
  auto exp = fixtureExtensions();
  expectEq("extensions.size", exp.size(), act.size());
  for (const auto& kv : exp) {
    auto it = act.find(kv.first);
    if (it == act.end()) throw CheckFailed("extensions: missing uuid " + std::to_string(kv.first));
    std::string w = "extensions[" + std::to_string(kv.first) + "].";
    expectEq(w + "name", kv.second.name, it->second.name);
    expectEq(w + "version", kv.second.version, it->second.version);
    expectEq(w + "sdk_version", kv.second.sdk_version, it->second.sdk_version);
    expectEq(w + "min_sdk_version", kv.second.min_sdk_version, it->second.min_sdk_version);
  }
}

void expectOptions(const InternalOptionList& act) {
  auto exp = fixtureOptions();
  expectEq("options.size", exp.size(), act.size());
  for (const auto& kv : exp) {
    auto it = act.find(kv.first);
    if (it == act.end()) throw CheckFailed("options: missing " + show(kv.first));
    std::string w = "options[" + kv.first + "].";
    expectEq(w + "value", kv.second.value, it->second.value);
    expectEq(w + "default_value", kv.second.default_value, it->second.default_value);
    expectEq(w + "type", kv.second.type, it->second.type);
  }
}

Rows echo(const std::string& registry, const std::string& item, const ExtensionPluginRequest& req) {
  return Rows{Row(req.begin(), req.end()), Row{{"registry", registry}, {"item", item}}};
}

struct Connection {
  std::shared_ptr<TSocket> socket;
  std::shared_ptr<TTransport> transport;
  std::shared_ptr<ExtensionManagerClient> client;

  explicit Connection(const std::string& path) {
    socket = std::make_shared<TSocket>(path);
    socket->setRecvTimeout(kClientTimeoutMs);
    socket->setSendTimeout(kClientTimeoutMs);
    transport = std::make_shared<TBufferedTransport>(socket);
    client = std::make_shared<ExtensionManagerClient>(std::make_shared<TBinaryProtocol>(transport));
    transport->open();
  }
  ~Connection() {
    try {
      transport->close();
    } catch (...) {
    }
  }
};

struct Check {
  std::string num;
  std::string name;
  std::function<void(ExtensionManagerClient&)> run;
};

std::vector<Check> buildChecks(const std::string& path) {
  std::vector<Check> c;

  c.push_back({"1", "ping", [](ExtensionManagerClient& cl) {
                 ExtensionStatus s;
                 cl.ping(s);
                 expectStatus(s, 0, "pong", kI64Max);
               }});
  c.push_back({"2", "call-echo", [](ExtensionManagerClient& cl) {
                 ExtensionPluginRequest req{{"action", "generate"}, {"context", "{}"}};
                 ExtensionResponse r;
                 cl.call(r, "table", "t", req);
                 expectResponse(r, 0, "OK", kI64Min, echo("table", "t", req));
               }});
  c.push_back({"3", "call-empty-request", [](ExtensionManagerClient& cl) {
                 ExtensionResponse r;
                 cl.call(r, "r", "i", {});
                 expectResponse(r, 0, "OK", kI64Min, echo("r", "i", {}));
               }});
  c.push_back({"4", "call-bytes", [](ExtensionManagerClient& cl) {
                 ExtensionPluginRequest req{{"ключ", "値✓"},
                                            {"invalid-value", "\xff\xfe\x80" "a"},
                                            {"\xc3\x28", "invalid-key"}};
                 ExtensionResponse r;
                 cl.call(r, "table", "bytes", req);
                 expectResponse(r, 0, "OK", kI64Min, echo("table", "bytes", req));
               }});
  c.push_back({"5", "call-large-request", [](ExtensionManagerClient& cl) {
                 ExtensionPluginRequest req;
                 for (int i = 0; i < 10000; ++i)
                   req["k" + std::to_string(i)] = "v" + std::to_string(i);
                 ExtensionResponse r;
                 cl.call(r, "table", "big", req);
                 expectResponse(r, 0, "OK", kI64Min, echo("table", "big", req));
               }});
  c.push_back({"6", "call-rows-100000", [](ExtensionManagerClient& cl) {
                 ExtensionResponse r;
                 cl.call(r, "x", "y", {{"rows", "100000"}});
                 expectResponse(r, 0, "OK", 0, fixtureRows(100000));
               }});
  c.push_back({"7", "call-fail", [](ExtensionManagerClient& cl) {
                 ExtensionResponse r;
                 cl.call(r, "fail", "boom", {});
                 expectResponse(r, 2, "failed: boom", 0, {});
               }});
  c.push_back({"7b", "sparse", [](ExtensionManagerClient& cl) {
                 ExtensionResponse r;
                 cl.call(r, "sparse", "s", {});
                 expectResponse(r, 0, "", 0, {});
               }});
  c.push_back({"8", "extensions", [](ExtensionManagerClient& cl) {
                 InternalExtensionList l;
                 cl.extensions(l);
                 expectExtensions(l);
               }});
  c.push_back({"9", "options", [](ExtensionManagerClient& cl) {
                 InternalOptionList l;
                 cl.options(l);
                 expectOptions(l);
               }});
  c.push_back({"10", "register", [](ExtensionManagerClient& cl) {
                 auto info = makeInfo("ext-ü", "1.2.3", "1.7.7", "1.0.0");
                 ExtensionRegistry reg{
                     {"table",
                      {{"t1",
                        {Row{{"id", "column"}, {"name", "a"}, {"type", "TEXT"}, {"op", "0"}},
                         Row{{"id", "attributes"}, {"attributes", "0"}}}},
                       {"t2", {}}}},
                     {"logger", {{"l", {}}}},
                     {"config", {}},
                 };
                 ExtensionStatus s;
                 cl.registerExtension(s, info, reg);
                 expectStatus(s, 0, canon(info, reg), 2);
               }});
  c.push_back({"11", "register-empty", [](ExtensionManagerClient& cl) {
                 ExtensionStatus s;
                 cl.registerExtension(s, InternalExtensionInfo(), {});
                 expectStatus(s, 0, ",,,", 0);
               }});
  c.push_back({"12", "register-bytes", [](ExtensionManagerClient& cl) {
                 auto info = makeInfo(std::string("\xff\x00" "A", 3), "1", "", "");
                 ExtensionRegistry reg{
                     {"table", {{"p\xff", {Row{{"\xc3\x28", "\xfe"}, {"a", ""}}}}}},
                 };
                 std::string exp = canon(info, reg);
                 if (exp.compare(0, 7, "ff0041,") != 0)
                   throw CheckFailed("local CANON is wrong: " + exp);
                 ExtensionStatus s;
                 cl.registerExtension(s, info, reg);
                 expectStatus(s, 0, exp, 1);
               }});
  c.push_back({"13", "deregister", [](ExtensionManagerClient& cl) {
                 for (int64_t u : {kI64Max, kI64Min, int64_t(0)}) {
                   ExtensionStatus s;
                   cl.deregisterExtension(s, u);
                   expectStatus(s, 0, std::to_string(u), u);
                 }
               }});
  c.push_back({"14", "query-rows-100000", [](ExtensionManagerClient& cl) {
                 ExtensionResponse r;
                 cl.query(r, "rows:100000");
                 expectResponse(r, 0, "OK", 0, fixtureRows(100000));
               }});
  c.push_back({"15", "query-error", [](ExtensionManagerClient& cl) {
                 ExtensionResponse r;
                 cl.query(r, "error");
                 expectResponse(r, 1, "near \"error\": syntax error", 0, {});
               }});
  c.push_back({"16", "query-bytes", [](ExtensionManagerClient& cl) {
                 std::string sql = "select 'ü' \xff";
                 ExtensionResponse r;
                 cl.query(r, sql);
                 expectResponse(r, 0, "OK", 0, Rows{Row{{"sql", sql}}});
               }});
  c.push_back({"17", "query-empty", [](ExtensionManagerClient& cl) {
                 ExtensionResponse r;
                 cl.query(r, "");
                 expectResponse(r, 0, "OK", 0, Rows{Row{{"sql", ""}}});
               }});
  c.push_back({"18", "columns", [](ExtensionManagerClient& cl) {
                 ExtensionResponse r;
                 cl.getQueryColumns(r, "select 1");
                 expectResponse(r, 0, "OK", 0,
                                Rows{Row{{"select 1", "TEXT"}}, Row{{"n", "INTEGER"}}});
               }});
  c.push_back({"19", "sequence", [path](ExtensionManagerClient&) {
                 // A fresh connection (the main one stays open): three calls in a row on it.
                 Connection conn(path);
                 ExtensionStatus s;
                 conn.client->ping(s);
                 expectStatus(s, 0, "pong", kI64Max);
                 InternalExtensionList e;
                 conn.client->extensions(e);
                 expectExtensions(e);
                 InternalOptionList o;
                 conn.client->options(o);
                 expectOptions(o);
               }});
  c.push_back({"20", "shutdown", [](ExtensionManagerClient& cl) { cl.shutdown(); }});
  return c;
}

std::string oneLine(std::string s) {
  for (auto& ch : s)
    if (ch == '\n' || ch == '\r') ch = ' ';
  return s;
}

int runClient(const std::string& path) {
  int passed = 0, failed = 0;
  std::unique_ptr<Connection> conn;
  for (const auto& check : buildChecks(path)) {
    std::string why;
    bool broken = false;
    try {
      if (!conn) conn.reset(new Connection(path));
      check.run(*conn->client);
    } catch (const CheckFailed& e) {
      why = e.what();
    } catch (const TException& e) {
      why = std::string("thrift: ") + e.what();
      broken = true;
    } catch (const std::exception& e) {
      why = std::string("exception: ") + e.what();
      broken = true;
    }
    if (why.empty()) {
      std::printf("ok %s %s\n", check.num.c_str(), check.name.c_str());
      ++passed;
    } else {
      std::printf("FAIL %s %s: %s\n", check.num.c_str(), check.name.c_str(), oneLine(why).c_str());
      ++failed;
      if (broken) conn.reset();  // the stream may be mid-message: start over
    }
    std::fflush(stdout);
  }
  conn.reset();
  std::printf("%d passed, %d failed\n", passed, failed);
  std::fflush(stdout);
  return failed == 0 ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// Benchmarks

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

long long parseCount(const char* s) {
  char* end = nullptr;
  long long n = std::strtoll(s, &end, 10);
  if (!end || *end || n <= 0) {
    std::fprintf(stderr, "fixture_peer: not a positive count: %s\n", s);
    std::exit(2);
  }
  return n;
}

int benchPing(const std::string& path, long long n) {
  Connection conn(path);
  ExtensionStatus s;
  for (int i = 0; i < 1000; ++i) conn.client->ping(s);
  if (s.code != 0) {
    std::fprintf(stderr, "fixture_peer: ping answered code %d\n", s.code);
    return 1;
  }
  auto t0 = Clock::now();
  for (long long i = 0; i < n; ++i) conn.client->ping(s);
  double secs = secondsSince(t0);
  std::printf("{\"bench\":\"ping\",\"ops\":%lld,\"ns_per_op\":%.1f}\n", n, secs * 1e9 / n);
  return 0;
}

int benchQuery(const std::string& path, const std::string& sql, long long n) {
  Connection conn(path);
  ExtensionResponse r;
  conn.client->query(r, sql);  // one warm-up call, which also gives the row count
  if (r.status.code != 0) {
    std::fprintf(stderr, "fixture_peer: query answered code %d: %s\n", r.status.code,
                 r.status.message.c_str());
    return 1;
  }
  size_t rowsPerOp = r.response.size();
  auto t0 = Clock::now();
  for (long long i = 0; i < n; ++i) conn.client->query(r, sql);
  double secs = secondsSince(t0);
  std::string sqlJson;
  for (unsigned char c : sql) {
    if (c == '"' || c == '\\') {
      sqlJson.push_back('\\');
      sqlJson.push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      sqlJson += buf;
    } else {
      sqlJson.push_back(static_cast<char>(c));
    }
  }
  std::printf(
      "{\"bench\":\"query\",\"sql\":\"%s\",\"ops\":%lld,\"rows_per_op\":%zu,\"ns_per_op\":%.1f,"
      "\"rows_per_s\":%.1f}\n",
      sqlJson.c_str(), n, rowsPerOp, secs * 1e9 / n, static_cast<double>(rowsPerOp) * n / secs);
  return 0;
}

int benchCodec(long long n) {
  ExtensionResponse in = makeResponse(makeStatus(0, "OK", 0), fixtureRows(1000));
  auto buffer = std::make_shared<TMemoryBuffer>();
  TBinaryProtocol proto(buffer);
  // One untimed round to size the buffer and check the round trip.
  in.write(&proto);
  uint32_t bytes = buffer->available_read();
  ExtensionResponse out;
  out.read(&proto);
  buffer->readEnd();
  if (!(out == in)) {
    std::fprintf(stderr, "fixture_peer: codec round trip differs\n");
    return 1;
  }
  auto t0 = Clock::now();
  for (long long i = 0; i < n; ++i) {
    buffer->resetBuffer();
    in.write(&proto);
    ExtensionResponse decoded;
    decoded.read(&proto);
    buffer->readEnd();
  }
  double secs = secondsSince(t0);
  std::printf("{\"bench\":\"codec\",\"ops\":%lld,\"bytes_per_op\":%u,\"ns_per_op\":%.1f,"
              "\"mb_per_s\":%.1f}\n",
              n, bytes, secs * 1e9 / n, static_cast<double>(bytes) * n / secs / 1e6);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Core client modes: one call to a running manager (ours, osquery's, a fixture), one JSON line out.
//   query SOCKET SQL    -> {"code":N,"message":"...","rows":[{"col":"val",...},...]}
//   extensions SOCKET   -> {"<uuid>":{"name":"...","version":"...","sdk_version":"...",
//                           "min_sdk_version":"..."},...}
// Keys come out sorted (std::map). Strings are bytes: valid UTF-8 passes through, `"` `\` and
// control characters are escaped, and each byte of an invalid UTF-8 sequence becomes \udcXX (a lone
// low surrogate, the convention of Python's surrogateescape, so the bytes can be recovered).
// A transport error goes to stderr with exit 1; a status code != 0 is data, exit 0.

// Length of the valid UTF-8 sequence at s[i], or 0 if the bytes there are not one.
size_t utf8SequenceLength(const std::string& s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  size_t n;
  uint32_t min;
  uint32_t cp;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) { n = 2; min = 0x80; cp = c & 0x1F; }
  else if ((c & 0xF0) == 0xE0) { n = 3; min = 0x800; cp = c & 0x0F; }
  else if ((c & 0xF8) == 0xF0) { n = 4; min = 0x10000; cp = c & 0x07; }
  else return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

std::string jsonString(const std::string& s) {
  std::string out = "\"";
  char buf[8];
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = utf8SequenceLength(s, i);
    if (n == 0) {
      std::snprintf(buf, sizeof buf, "\\udc%02x", c);
      out += buf;
      ++i;
      continue;
    }
    if (n == 1) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          if (c < 0x20 || c == 0x7f) {
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
          } else {
            out.push_back(static_cast<char>(c));
          }
      }
    } else {
      out.append(s, i, n);
    }
    i += n;
  }
  out += "\"";
  return out;
}

int runQuery(const std::string& path, const std::string& sql) {
  Connection conn(path);
  ExtensionResponse r;
  conn.client->query(r, sql);
  std::string out = "{\"code\":" + std::to_string(r.status.code) +
                    ",\"message\":" + jsonString(r.status.message) + ",\"rows\":[";
  for (size_t i = 0; i < r.response.size(); ++i) {
    if (i) out += ",";
    out += "{";
    bool first = true;
    for (const auto& kv : r.response[i]) {
      if (!first) out += ",";
      first = false;
      out += jsonString(kv.first) + ":" + jsonString(kv.second);
    }
    out += "}";
  }
  out += "]}\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  return 0;
}

int runExtensions(const std::string& path) {
  Connection conn(path);
  InternalExtensionList list;
  conn.client->extensions(list);
  std::string out = "{";
  bool first = true;
  for (const auto& kv : list) {  // std::map: ascending uuid
    if (!first) out += ",";
    first = false;
    const InternalExtensionInfo& info = kv.second;
    out += "\"" + std::to_string(kv.first) + "\":{\"name\":" + jsonString(info.name) +
           ",\"version\":" + jsonString(info.version) + ",\"sdk_version\":" +
           jsonString(info.sdk_version) + ",\"min_sdk_version\":" + jsonString(info.min_sdk_version) +
           "}";
  }
  out += "}\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  return 0;
}

// `register SOCKET NAME`: registerExtension with one table NAME_tbl; prints the status.
int runRegister(const std::string& path, const std::string& name) {
  Connection conn(path);
  InternalExtensionInfo info;
  info.name = name;
  info.version = "1.0";
  info.sdk_version = "1.7.7";
  info.min_sdk_version = "1.0.0";
  ExtensionRegistry registry;
  registry["table"][name + "_tbl"] = {{{"id", "column"}, {"name", "a"}, {"type", "TEXT"}, {"op", "0"}}};
  ExtensionStatus status;
  conn.client->registerExtension(status, info, registry);
  std::string out = "{\"code\":" + std::to_string(status.code) + ",\"message\":" + jsonString(status.message) +
                    ",\"uuid\":" + std::to_string(status.uuid) + "}\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  return 0;
}

// `bench-load SOCKET CLIENTS SECONDS [SQL ROWS]`: CLIENTS threads, each on its own connection (all
// opened before the clock starts), call for SECONDS: three pings then one query, repeated. The query
// is SQL (default "rows:10", the fixture's) and must answer ROWS rows (default 10). A failed call
// counts as an error and the thread reconnects. One JSON line out.
int benchLoad(const std::string& path, long long clients, long long seconds,
              const std::string& sql = "rows:10", size_t expectedRows = 10) {
  std::atomic<bool> go{false};
  std::atomic<bool> stop{false};
  std::atomic<long long> pings{0}, queries{0}, errors{0};
  std::atomic<int> ready{0};
  std::mutex errorMutex;
  std::string firstError;
  auto noteError = [&](const std::string& what) {
    errors.fetch_add(1);
    std::lock_guard<std::mutex> lock(errorMutex);
    if (firstError.empty()) firstError = what;
  };
  // Errors are counted and the first one reported; libthrift's own log line per failed
  // connect would flood stderr.
  apache::thrift::GlobalOutput.setOutputFunction([](const char*) {});
  std::atomic<bool> connectFailed{false};
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(clients));
  for (long long t = 0; t < clients; ++t) {
    threads.emplace_back([&] {
      std::unique_ptr<Connection> conn;
      try {
        conn.reset(new Connection(path));
      } catch (const std::exception& e) {
        noteError(std::string("connect: ") + e.what());
        connectFailed.store(true);
      }
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      if (connectFailed.load()) return;  // nothing to measure without every client connected
      long long myPings = 0, myQueries = 0;
      ExtensionStatus s;
      ExtensionResponse r;
      for (unsigned i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        try {
          if (!conn) conn.reset(new Connection(path));
          if (i % 4 == 3) {
            conn->client->query(r, sql);
            if (r.status.code != 0 || r.response.size() != expectedRows) {
              noteError("query: code " + std::to_string(r.status.code) + " " + r.status.message + ", " +
                        std::to_string(r.response.size()) + " rows");
            } else {
              ++myQueries;
            }
          } else {
            conn->client->ping(s);
            if (s.code != 0) {
              noteError("ping: code " + std::to_string(s.code));
            } else {
              ++myPings;
            }
          }
        } catch (const std::exception& e) {
          noteError(e.what());
          conn.reset();  // the stream may be mid-message: start over
          std::this_thread::sleep_for(std::chrono::milliseconds(1));  // no busy loop on a dead server
        }
      }
      pings.fetch_add(myPings);
      queries.fetch_add(myQueries);
    });
  }
  while (ready.load() < clients) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto t0 = Clock::now();
  go.store(true);
  if (connectFailed.load()) {
    for (auto& th : threads) th.join();
    std::fprintf(stderr, "fixture_peer bench-load: %s\n", firstError.c_str());
    return 1;
  }
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  stop.store(true);
  for (auto& th : threads) th.join();
  double secs = secondsSince(t0);
  long long calls = pings.load() + queries.load();
  std::printf("{\"bench\":\"load\",\"clients\":%lld,\"seconds\":%.3f,\"pings\":%lld,\"queries\":%lld,"
              "\"errors\":%lld,\"calls_per_s\":%.1f,\"first_error\":%s}\n",
              clients, secs, pings.load(), queries.load(), errors.load(), calls / secs,
              jsonString(firstError).c_str());
  std::fflush(stdout);
  return 0;
}

int usage() {
  std::fprintf(stderr,
               "usage: fixture_peer server SOCKET | client SOCKET | bench-ping SOCKET N |\n"
               "       bench-query SOCKET SQL N | bench-codec N | query SOCKET SQL |\n"
               "       extensions SOCKET | register SOCKET NAME | bench-load SOCKET CLIENTS SECONDS [SQL ROWS]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string mode = argv[1];
  try {
    if (mode == "server" && argc == 3) return runServer(argv[2]);
    if (mode == "client" && argc == 3) return runClient(argv[2]);
    if (mode == "bench-ping" && argc == 4) return benchPing(argv[2], parseCount(argv[3]));
    if (mode == "bench-query" && argc == 5)
      return benchQuery(argv[2], argv[3], parseCount(argv[4]));
    if (mode == "bench-codec" && argc == 3) return benchCodec(parseCount(argv[2]));
    if (mode == "query" && argc == 4) return runQuery(argv[2], argv[3]);
    if (mode == "extensions" && argc == 3) return runExtensions(argv[2]);
    if (mode == "register" && argc == 4) return runRegister(argv[2], argv[3]);
    if (mode == "bench-load" && argc == 5)
      return benchLoad(argv[2], parseCount(argv[3]), parseCount(argv[4]));
    if (mode == "bench-load" && argc == 7)
      return benchLoad(argv[2], parseCount(argv[3]), parseCount(argv[4]), argv[5],
                       static_cast<size_t>(parseCount(argv[6])));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fixture_peer %s: %s\n", mode.c_str(), e.what());
    return 1;
  }
  return usage();
}
