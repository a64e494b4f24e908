import GemcacheKey

/// Runs one operation per key at a time; callers that arrive while it runs share its result (SPEC §5).
///
/// The operation runs in its own unstructured task, so a leader whose client goes away does not
/// cancel the call the other waiters are sharing (groupcache's `singleflight`, without its sleeps).
actor SingleFlight<Key: Hashable & Sendable, Value: Sendable> {
    private var flights: [Key: Task<Value, any Error>] = [:]

    /// Runs `operation` for `key`, or waits for the flight already running for it.
    /// - Returns: The shared value, and whether this caller led the flight.
    func run(_ key: Key, _ operation: @escaping @Sendable () async throws -> Value) async throws -> (value: Value, led: Bool) {
        if let flight = flights[key] {
            return (try await flight.value, false)
        }
        // The task inherits this actor's isolation: it starts only after `flights[key]` is set, and
        // clears it on the actor before any later caller can join a finished flight.
        let flight = Task {
            defer { self.flights[key] = nil }
            return try await operation()
        }
        flights[key] = flight
        return (try await flight.value, true)
    }
}
