/// Who is on the other end of a Unix-socket connection, as the kernel reports
/// it (`SO_PEERCRED`): it cannot be forged by the peer.
public struct PeerCredentials: Sendable, Equatable, CustomStringConvertible {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    public var description: String { "pid \(pid), uid \(uid), gid \(gid)" }

    /// The credentials of the connection whose call is being handled, inside
    /// an ``ExtensionHandler`` or ``ExtensionManagerHandler`` method served by
    /// ``RPCServer``; nil elsewhere, or when the kernel did not say.
    @TaskLocal public static var current: PeerCredentials?
}
