import CTSK
import Crypto
import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// osquery's sleuthkit tables (`device_file`, `device_hash`, `device_partitions`): a disk image
/// or block device read through The Sleuth Kit (Debian's libtsk), below the mounted filesystem.
///
/// Where osquery's tables come back empty, these answer (docs/differences-from-osquery.md):
/// a device with no partition table (a bare filesystem, such as a partition's own node) is one
/// partition, `0`; an inode asked for on a filesystem that keeps no names in its inodes (ext2/3/4)
/// still has its row. A device path must be a regular file or a block device: a FIFO or a
/// character device would block or never end.
enum DeviceTables {
    /// osquery's names of TSK's file types.
    static func typeName(_ type: TSK_FS_META_TYPE_ENUM) -> String {
        switch type {
        case TSK_FS_META_TYPE_REG: "regular"
        case TSK_FS_META_TYPE_DIR: "directory"
        case TSK_FS_META_TYPE_LNK: "symlink"
        case TSK_FS_META_TYPE_BLK: "block"
        case TSK_FS_META_TYPE_CHR: "character"
        case TSK_FS_META_TYPE_FIFO: "fifo"
        case TSK_FS_META_TYPE_SOCK: "socket"
        default: "unknown"
        }
    }

    /// osquery's walk bounds: directories entered and entries read per partition.
    static let maxDirectories = 1024
    static let maxEntries = 1024 * 10

    /// One partition of an opened device: its number and, when TSK recognises one, its filesystem.
    struct Partition {
        let address: String
        let part: UnsafePointer<TSK_VS_PART_INFO>?
        let fs: UnsafeMutablePointer<TSK_FS_INFO>?
    }

    /// An opened device: the image and its volume system (nil for a bare filesystem).
    final class Device {
        let path: String
        let image: UnsafeMutablePointer<TSK_IMG_INFO>
        let volume: UnsafeMutablePointer<TSK_VS_INFO>?

        /// Opens `path`, or logs once why it cannot.
        init?(_ path: String, log: OnceLog) {
            var st = stat()
            guard stat(path, &st) == 0 else {
                log.info("Cannot open device \(path): \(String(cString: strerror(errno)))")
                return nil
            }
            let kind = st.st_mode & S_IFMT
            guard kind == S_IFREG || kind == S_IFBLK else {
                log.info("Cannot open device \(path): not a regular file or block device")
                return nil
            }
            guard osq_tsk_available() != 0 else {
                log.info("Cannot open device \(path): The Sleuth Kit (libtsk.so.19) is not installed")
                return nil
            }
            guard let image = osq_tsk_img_open_sing(path, TSK_IMG_TYPE_DETECT, 0) else {
                log.info("Cannot open device \(path): \(Self.tskError())")
                return nil
            }
            self.path = path
            self.image = image
            self.volume = osq_tsk_vs_open(image, 0, TSK_VS_TYPE_DETECT)
            osq_tsk_error_reset()
        }

        deinit {
            if let volume { osq_tsk_vs_close(volume) }
            osq_tsk_img_close(image)
        }

        static func tskError() -> String {
            let text = osq_tsk_error_get().map { String(cString: $0) } ?? "unrecognised image"
            osq_tsk_error_reset()
            return text
        }

        /// Each partition in the volume system's order, its filesystem opened when there is one
        /// (closed after `body`); a bare filesystem is partition 0.
        func partitions(_ body: (Partition) throws -> Void) rethrows {
            guard let volume else {
                guard let fs = osq_tsk_fs_open_img(image, 0, TSK_FS_TYPE_DETECT) else {
                    osq_tsk_error_reset()
                    return
                }
                defer { osq_tsk_fs_close(fs) }
                try body(Partition(address: "0", part: nil, fs: fs))
                return
            }
            for i in 0..<volume.pointee.part_count {
                guard let part = osq_tsk_vs_part_get(volume, i) else { continue }
                let fs = osq_tsk_fs_open_vol(part, TSK_FS_TYPE_DETECT)
                osq_tsk_error_reset()
                defer { if let fs { osq_tsk_fs_close(fs) } }
                try body(Partition(address: String(part.pointee.addr), part: part, fs: fs))
            }
        }
    }

    // MARK: device_partitions

    static func devicePartitions(log: OnceLog = .shared) -> FunctionTable {
        table("device_partitions", [
            col("device", .text, .required), col("partition", .integer), col("label", .text), col("type", .text),
            col("offset", .bigint), col("blocks_size", .bigint), col("blocks", .bigint), col("inodes", .bigint),
            col("flags", .integer),
        ]) { context, schema in
            var rows = TableRows(schema: schema)
            for path in context.equalities(for: "device") {
                guard let device = Device(path, log: log) else { continue }
                device.partitions { p in
                    rows.append(.text(path))
                    rows.append(.integer(Int64(p.address) ?? 0))
                    if let part = p.part {
                        rows.append(part.pointee.desc.map { .text(String(cString: $0)) } ?? .null)
                    } else {
                        rows.append(.null)
                    }
                    if let fs = p.fs {
                        rows.append(.text(osq_tsk_fs_type_toname(fs.pointee.ftype).map { String(cString: $0) } ?? "unknown"))
                        rows.append(.integer(fs.pointee.offset))
                        rows.append(.integer(Int64(fs.pointee.block_size)))
                        rows.append(.integer(Int64(bitPattern: UInt64(fs.pointee.block_count))))
                        rows.append(.integer(Int64(bitPattern: UInt64(fs.pointee.inum_count))))
                        rows.append(.integer(Int64(fs.pointee.flags.rawValue)))
                    } else if let part = p.part {
                        let flags = part.pointee.flags.rawValue
                        let type =
                            flags & TSK_VS_PART_FLAG_META.rawValue != 0
                            ? "meta" : flags & TSK_VS_PART_FLAG_UNALLOC.rawValue != 0 ? "unallocated" : "normal"
                        let blockSize = Int64(device.volume?.pointee.block_size ?? 0)
                        rows.append(.text(type))
                        rows.append(.integer(Int64(bitPattern: UInt64(part.pointee.start)) &* blockSize))
                        rows.append(.integer(blockSize))
                        rows.append(.integer(Int64(bitPattern: UInt64(part.pointee.len))))
                        rows.append(.integer(-1))
                        rows.append(.integer(Int64(flags)))
                    }
                }
            }
            return rows
        }
    }

    // MARK: device_file

    static func fileRow(
        _ rows: inout TableRows, device: String, partition: String, path: String,
        file: UnsafeMutablePointer<TSK_FS_FILE>, fs: UnsafeMutablePointer<TSK_FS_INFO>
    ) {
        rows.append(.text(device))
        rows.append(.text(partition))
        rows.append(.text(path))
        rows.append(.text(path.split(separator: "/", omittingEmptySubsequences: true).last.map(String.init) ?? ""))
        guard let meta = file.pointee.meta?.pointee else {
            for value: SQLValue in [.null, .null, .null, .null, .null, .integer(Int64(fs.pointee.block_size))] { rows.append(value) }
            for _ in 0..<5 { rows.append(.null) }
            return
        }
        rows.append(.integer(Int64(bitPattern: UInt64(meta.addr))))
        rows.append(.integer(Int64(meta.uid)))
        rows.append(.integer(Int64(meta.gid)))
        rows.append(.text(String(meta.mode.rawValue)))
        rows.append(.integer(meta.size))
        rows.append(.integer(Int64(fs.pointee.block_size)))
        rows.append(.integer(Int64(meta.atime)))
        rows.append(.integer(Int64(meta.mtime)))
        rows.append(.integer(Int64(meta.crtime)))
        rows.append(.integer(Int64(meta.nlink)))
        rows.append(.text(typeName(meta.type)))
    }

    /// The name TSK keeps in an inode (NTFS, FAT); "" where the filesystem keeps none.
    static func inodeName(_ file: UnsafeMutablePointer<TSK_FS_FILE>) -> String {
        guard let list = file.pointee.meta?.pointee.name2 else { return "" }
        return withUnsafeBytes(of: list.pointee.name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// osquery's walk: regular files from the root, directories entered in inode order after
    /// each directory's entries, within ``maxDirectories`` and ``maxEntries``.
    static func walk(
        _ rows: inout TableRows, device: String, partition: String, fs: UnsafeMutablePointer<TSK_FS_INFO>
    ) {
        var directories = 0
        var entries = 0
        var seen = Set<String>()
        func visit(_ path: String, _ inode: TSK_INUM_T) {
            directories += 1
            if directories > maxDirectories { return }
            guard let dir = osq_tsk_fs_dir_open_meta(fs, inode) else {
                osq_tsk_error_reset()
                return
            }
            var below: [(TSK_INUM_T, String)] = []
            for i in 0..<osq_tsk_fs_dir_getsize(dir) {
                entries += 1
                if entries > maxEntries { break }
                guard let file = osq_tsk_fs_dir_get(dir, i) else { continue }
                defer { osq_tsk_fs_file_close(file) }
                guard let meta = file.pointee.meta?.pointee else { continue }
                let name = file.pointee.name.map { String(cString: $0.pointee.name) } ?? ""
                let leaf = path.hasSuffix("/") ? path + name : path + "/" + name
                if meta.type == TSK_FS_META_TYPE_REG {
                    fileRow(&rows, device: device, partition: partition, path: leaf, file: file, fs: fs)
                } else if meta.type == TSK_FS_META_TYPE_DIR, !name.isEmpty, name != ".", name != ".." {
                    below.append((meta.addr, leaf))
                }
            }
            osq_tsk_fs_dir_close(dir)
            for (inode, leaf) in below.sorted(by: { $0.0 < $1.0 }) where !seen.contains(leaf) {
                visit(leaf, inode)
                seen.insert(leaf)
            }
        }
        visit("/", fs.pointee.root_inum)
    }

    static func deviceFile(log: OnceLog = .shared) -> FunctionTable {
        table("device_file", [
            col("device", .text, [.index, .required]), col("partition", .text, [.index, .required]), col("path", .text, .additional),
            col("filename", .text), col("inode", .bigint, .index), col("uid", .bigint), col("gid", .bigint), col("mode", .text),
            col("size", .bigint), col("block_size", .integer), col("atime", .bigint), col("mtime", .bigint), col("ctime", .bigint),
            col("hard_links", .integer), col("type", .text),
        ]) { context, schema in
            var rows = TableRows(schema: schema)
            let devices = context.equalities(for: "device")
            let partitions = context.equalities(for: "partition")
            let paths = context.equalities(for: "path")
            let inodes = context.equalities(for: "inode")
            guard !devices.isEmpty, partitions.count == 1, let wanted = partitions.first else {
                log.info("Device files require at least one device and a single partition")
                return rows
            }
            for path in devices {
                guard let device = Device(path, log: log) else { continue }
                device.partitions { p in
                    guard p.address == wanted, let fs = p.fs else { return }
                    if paths.isEmpty && inodes.isEmpty { walk(&rows, device: path, partition: wanted, fs: fs) }
                    for filePath in paths {
                        guard let file = osq_tsk_fs_file_open(fs, nil, filePath) else {
                            osq_tsk_error_reset()
                            continue
                        }
                        fileRow(&rows, device: path, partition: wanted, path: filePath, file: file, fs: fs)
                        osq_tsk_fs_file_close(file)
                    }
                    for inode in inodes {
                        guard let number = UInt64(inode), let file = osq_tsk_fs_file_open_meta(fs, nil, number) else {
                            osq_tsk_error_reset()
                            continue
                        }
                        if file.pointee.meta != nil {
                            fileRow(&rows, device: path, partition: wanted, path: inodeName(file), file: file, fs: fs)
                        }
                        osq_tsk_fs_file_close(file)
                    }
                }
            }
            return rows
        }
    }

    // MARK: device_hash

    /// md5, sha1 and sha256 of an inode's content in one pass; "" for an empty file or a short
    /// read, as osquery; nil past `readMax` (logged).
    static func hashInode(_ file: UnsafeMutablePointer<TSK_FS_FILE>, readMax: UInt64, shown: String, log: OnceLog)
        -> (String, String, String)?
    {
        guard let meta = file.pointee.meta?.pointee else { return nil }
        let size = meta.size
        if size <= 0 { return ("", "", "") }
        if readMax > 0 && UInt64(size) > readMax {
            log.info("Cannot hash \(shown): larger than read_max (\(readMax) bytes)")
            return nil
        }
        var md5 = Insecure.MD5()
        var sha1 = Insecure.SHA1()
        var sha256 = SHA256()
        var buffer = [UInt8](repeating: 0, count: 65536)
        var offset: Int64 = 0
        while offset < size {
            let want = Int(min(size - offset, Int64(buffer.count)))
            let got = buffer.withUnsafeMutableBytes { raw in
                osq_tsk_fs_file_read(file, offset, raw.baseAddress?.assumingMemoryBound(to: CChar.self), want, TSK_FS_FILE_READ_FLAG_NONE)
            }
            guard got == want else {
                osq_tsk_error_reset()
                return ("", "", "")
            }
            buffer.withUnsafeBytes { raw in
                let chunk = UnsafeRawBufferPointer(rebasing: raw[0..<want])
                md5.update(bufferPointer: chunk)
                sha1.update(bufferPointer: chunk)
                sha256.update(bufferPointer: chunk)
            }
            offset += Int64(want)
        }
        return (Hex.lowercase(md5.finalize()), Hex.lowercase(sha1.finalize()), Hex.lowercase(sha256.finalize()))
    }

    static func deviceHash(flags: Flags, log: OnceLog = .shared) -> FunctionTable {
        table("device_hash", [
            col("device", .text, .required), col("partition", .text, .required), col("inode", .bigint, .required),
            col("md5", .text, .collateNocase), col("sha1", .text, .collateNocase), col("sha256", .text, .collateNocase),
        ]) { context, schema in
            var rows = TableRows(schema: schema)
            let partitions = context.equalities(for: "partition")
            let inodes = context.equalities(for: "inode")
            guard let wanted = partitions.first else { return rows }
            for path in context.equalities(for: "device") {
                guard let device = Device(path, log: log) else { continue }
                device.partitions { p in
                    guard p.address == wanted, let fs = p.fs else { return }
                    for inode in inodes {
                        guard let number = UInt64(inode), let file = osq_tsk_fs_file_open_meta(fs, nil, number) else {
                            osq_tsk_error_reset()
                            continue
                        }
                        defer { osq_tsk_fs_file_close(file) }
                        let shown = "inode \(inode) of \(path) partition \(wanted)"
                        guard let (md5, sha1, sha256) = hashInode(file, readMax: flags[.readMax], shown: shown, log: log) else { continue }
                        rows.appendRow([.text(path), .text(wanted), .integer(Int64(bitPattern: number)), .text(md5), .text(sha1), .text(sha256)])
                    }
                }
            }
            return rows
        }
    }
}
