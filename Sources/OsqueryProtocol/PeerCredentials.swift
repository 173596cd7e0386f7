/// Who is on the other end of a Unix-socket connection, as the kernel reports
/// it (`SO_PEERCRED`): it cannot be forged by the peer.
package struct PeerCredentials: Sendable, Equatable, CustomStringConvertible {
    package var pid: Int32
    package var uid: UInt32
    package var gid: UInt32

    package init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    package var description: String { "pid \(pid), uid \(uid), gid \(gid)" }

    /// The credentials of the connection whose call is being handled, inside
    /// an ``ExtensionHandler`` or ``ExtensionManagerHandler`` method served by
    /// ``RPCServer``; nil elsewhere, or when the kernel did not say.
    @TaskLocal package static var current: PeerCredentials?
}
