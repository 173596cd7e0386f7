import OsqueryEngine
#if canImport(Glibc)
import Glibc
#endif

/// One unit of table work run on its own POSIX thread.
private final class RowsJob: @unchecked Sendable {
    let index: Int
    let body: @Sendable (Int) -> (TableRows, Int)
    var result: (TableRows, Int)?

    init(index: Int, body: @escaping @Sendable (Int) -> (TableRows, Int)) {
        self.index = index
        self.body = body
    }

    func run() { result = body(index) }
}

private func runRowsJob(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    guard let raw else { return nil }
    Unmanaged<RowsJob>.fromOpaque(raw).takeRetainedValue().run()
    return nil
}

/// Run `count` independent jobs on plain POSIX threads (job 0 on the calling
/// thread) and return their results in order. For blocking, kernel-bound work
/// such as scanning /proc; it never touches the Swift concurrency pool.
enum Parallel {
    static func map(_ count: Int, _ body: @escaping @Sendable (Int) -> (TableRows, Int)) -> [(TableRows, Int)] {
        if count <= 1 { return count == 1 ? [body(0)] : [] }
        var threads: [pthread_t] = []
        var jobs: [RowsJob] = []
        for i in 1..<count {
            let job = RowsJob(index: i, body: body)
            jobs.append(job)
            var thread = pthread_t()
            let context = Unmanaged.passRetained(job).toOpaque()
            if pthread_create(&thread, nil, runRowsJob, context) == 0 {
                threads.append(thread)
            } else {
                Unmanaged<RowsJob>.fromOpaque(context).release()
                job.run()
            }
        }
        var results = [body(0)]
        for t in threads { pthread_join(t, nil) }
        for job in jobs { results.append(job.result!) }
        return results
    }
}
