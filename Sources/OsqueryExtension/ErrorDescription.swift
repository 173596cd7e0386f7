#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// How a thrown error reads in a status or a log: a `LocalizedError`'s `errorDescription` when it
/// has one (what its author wrote for people), else `String(describing:)`.
func describe(_ error: any Error) -> String {
    if let localized = error as? any LocalizedError, let text = localized.errorDescription { return text }
    return String(describing: error)
}
