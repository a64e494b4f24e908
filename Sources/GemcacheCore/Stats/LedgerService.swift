import AsyncAlgorithms
public import ServiceLifecycle

/// Prunes the ledger's per-minute and per-day counters once a minute while the proxy runs.
public struct LedgerService: Service {
    let ledger: Ledger
    let interval: Duration

    public init(ledger: Ledger, interval: Duration = .seconds(60)) {
        self.ledger = ledger
        self.interval = interval
    }

    public func run() async throws {
        for await _ in AsyncTimerSequence(interval: interval, clock: .continuous).cancelOnGracefulShutdown() {
            await ledger.prune()
        }
    }
}
