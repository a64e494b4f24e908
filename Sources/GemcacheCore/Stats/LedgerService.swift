import AsyncAlgorithms
public import ServiceLifecycle

/// Learns the namespaces and clients already counted, then prunes the ledger's per-minute, per-hour
/// and per-day counters once a minute while the proxy runs (off the start-up path: a shared tier
/// may take a while to answer).
public struct LedgerService: Service {
    let ledger: Ledger
    let interval: Duration

    public init(ledger: Ledger, interval: Duration = .seconds(60)) {
        self.ledger = ledger
        self.interval = interval
    }

    public func run() async throws {
        await ledger.learnCountedNames()
        for await _ in AsyncTimerSequence(interval: interval, clock: .continuous).cancelOnGracefulShutdown() {
            await ledger.prune()
        }
    }
}
