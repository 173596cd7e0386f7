/// Version numbers this implementation reports.
public enum OsqueryVersion {
    /// The osquery release whose behaviour and schemas this build matches
    /// (reported as `version` so fleet managers gate features correctly).
    public static let version = "5.23.1"
    /// The extension SDK version the core speaks.
    public static let sdkVersion = "5.23.1"
    public static let buildPlatform = "linux"
    public static let buildDistro = "swift"
}
