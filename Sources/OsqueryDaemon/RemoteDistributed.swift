import Foundation
import OsqueryEngine
import OsqueryManager

/// osquery's `tls` distributed plugin (plugins/distributed/tls_distributed.cpp): reads work from
/// `--distributed_tls_read_endpoint` and writes results to `--distributed_tls_write_endpoint`,
/// each up to `--distributed_tls_max_attempts` times; the loop (discovery, accelerate, statuses,
/// messages, stats) is the one extensions' plugins use.
struct TLSDistributedSource: DistributedSource {
    let api: RemoteAPI

    func getQueries() async -> String? {
        let api = self.api
        return await offCooperativePool { () -> String? in
            do throws(DaemonError) {
                return try api.request(
                    api.flags[.distributedTlsReadEndpoint], params: [:], attempts: api.flags[.distributedTlsMaxAttempts]
                ).text
            } catch {
                StatusLog.warning("Distributed read failed: \(error.message)")
                return nil
            }
        }
    }

    func writeResults(_ json: String) async {
        let api = self.api
        await offCooperativePool {
            guard let params = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any] else { return }
            do throws(DaemonError) {
                _ = try api.request(
                    api.flags[.distributedTlsWriteEndpoint], params: params, attempts: api.flags[.distributedTlsMaxAttempts])
            } catch {
                StatusLog.warning("Distributed write failed: \(error.message)")
            }
        }
    }
}
