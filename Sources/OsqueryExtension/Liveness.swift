import Logging

// The core's liveness: by default the extension stops when the core is gone or no longer lists
// it; `--supervised`, it waits for a core and registers again.
extension Extension {
    func livenessLoop() async {
        let (options, logger) = state.withLock { ($0.options, $0.logger) }
        let interval = Duration.seconds(max(options.interval, 0.2))
        // Its own client: liveness never waits behind user queries or shares their connections.
        let watcher = OsqueryClient(socket: options.socket, connectTimeout: .seconds(2), callTimeout: max(interval, .seconds(2)))
        var strikes = 0
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            do {
                let epoch = router.registrationEpoch.load(ordering: .sequentiallyConsistent)
                let list = try await watcher.extensions()
                strikes = 0
                let me = uuid
                if list[me]?.name == name { continue }
                // Our own re-registration (plugins added or removed) was under way: look again
                // next time rather than take the gap for a deregistration.
                if epoch % 2 == 1 || router.registrationEpoch.load(ordering: .sequentiallyConsistent) != epoch { continue }
                logger.warning("the core no longer lists \(name) (uuid \(me))")
                if options.supervised {
                    await reconnect(logger: logger)
                } else {
                    stopSink.yield(.deregistered)
                    return
                }
            } catch {
                var gone = false
                if case .transport(let e) = error {
                    switch e.error {
                    case .noSocket, .connectionRefused, .badSocketPath: gone = true
                    default: break
                    }
                }
                strikes += gone ? 2 : 1
                logger.info("liveness check failed (\(strikes)/\(configuration.strikeLimit)): \(error)")
                guard strikes >= configuration.strikeLimit else { continue }
                strikes = 0
                if options.supervised {
                    logger.warning("the core at \(options.socket) is gone; waiting for it to return")
                    await reconnect(logger: logger)
                } else {
                    stopSink.yield(.coreGone)
                    return
                }
            }
        }
    }

    /// Supervised mode: wait (with back-off) for a core, then register again.
    func reconnect(logger: Logger) async {
        let (core, oldServer) = state.withLock { s -> (OsqueryClient?, RPCServer?) in
            let old = s.server
            s.server = nil
            return (s.core, old)
        }
        guard let core else { return }
        await oldServer?.close()
        router.uuid.store(0, ordering: .relaxed)
        var delay = Duration.milliseconds(100)
        while !Task.isCancelled {
            do {
                try await core.waitUntilAvailable(timeout: .seconds(3600))
                try await registerAndListen(core: core, logger: logger)
                return
            } catch {
                logger.info("re-registration failed: \(error); retrying in \(delay)")
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }
}
