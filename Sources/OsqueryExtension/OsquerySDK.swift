/// Versions this SDK reports.
package enum OsquerySDK {
    /// This Swift SDK's own version.
    package static let version = "0.1.0"
    /// The osquery SDK (protocol) version this SDK implements, sent as `sdk_version`
    /// at registration, as osquery's C++ SDK sends the osquery version it was built from.
    package static let osqueryVersion = "5.16.0"
    /// The oldest core SDK version this SDK works with, sent as `min_sdk_version`
    /// (osquery's current extension protocol dates from 1.7.7).
    package static let minimumCoreVersion = "1.7.7"
}
