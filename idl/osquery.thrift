// osquery's extension contract. Every service and method name, field id and
// type here is wire-identical to osquery's own IDL, so real osquery cores,
// extensions and SDKs interoperate with ours. This file is the single source
// of truth: the Swift types in Sources/OsqueryProtocol mirror it (a test fails
// if they drift) and the test peers are generated from it at test time.

namespace cpp osquery.extensions
namespace py osquery.extensions

// A registry call's arguments, e.g. {"action": "generate", "context": "..."}.
typedef map<string, string> ExtensionPluginRequest
// A registry call's rows.
typedef list<map<string, string>> ExtensionPluginResponse

// One command-line flag as the core reports it: gflags type names in `type`.
struct InternalOptionInfo {
  1:string value,
  2:string default_value,
  3:string type,
}

typedef map<string, InternalOptionInfo> InternalOptionList

// What an extension says about itself when it registers.
struct InternalExtensionInfo {
  1:string name,
  2:string version,
  3:string sdk_version,
  4:string min_sdk_version,
}

// The core hands each registered extension a unique id (0 is the core).
typedef i64 ExtensionRouteUUID
// Plugin name -> route info (for tables: its columns, aliases, attributes).
typedef map<string, ExtensionPluginResponse> ExtensionRouteTable
// Registry name ("table", "logger", ...) -> its plugins.
typedef map<string, ExtensionRouteTable> ExtensionRegistry
typedef map<ExtensionRouteUUID, InternalExtensionInfo> InternalExtensionList

enum ExtensionCode {
  EXT_SUCCESS = 0,
  EXT_FAILED = 1,
  EXT_FATAL = 2,
}

struct ExtensionStatus {
  1:i32 code,
  2:string message,
  3:ExtensionRouteUUID uuid,
}

struct ExtensionResponse {
  1:ExtensionStatus status,
  2:ExtensionPluginResponse response,
}

// Declared by osquery but listed in no throws clause, so it never travels.
exception ExtensionException {
  1:i32 code,
  2:string message,
  3:ExtensionRouteUUID uuid,
}

// Served by every extension, and by the core (the manager extends it).
service Extension {
  ExtensionStatus ping(),
  ExtensionResponse call(
    1:string registry,
    2:string item,
    3:ExtensionPluginRequest request),
  // Not oneway: the caller waits for the empty reply.
  void shutdown(),
}

// Served by the core on its extensions socket.
service ExtensionManager extends Extension {
  InternalExtensionList extensions(),
  InternalOptionList options(),
  ExtensionStatus registerExtension(
    1:InternalExtensionInfo info,
    2:ExtensionRegistry registry),
  ExtensionStatus deregisterExtension(
    1:ExtensionRouteUUID uuid),
  ExtensionResponse query(
    1:string sql),
  ExtensionResponse getQueryColumns(
    1:string sql),
}
