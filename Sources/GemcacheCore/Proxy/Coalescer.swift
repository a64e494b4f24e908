import GemcacheKey
import Synchronization

/// Identical concurrent misses share one ``Flight`` (SPEC §5): whole answers and streams alike.
///
/// The flight is filled by its own unstructured task, so a leader whose client goes away does not
/// cancel the call the other clients are sharing (groupcache's `singleflight`, without its sleeps).
/// A flight that grew past its limit cannot be joined: a request that comes then starts its own.
final class Coalescer: Sendable {
    private let flights = Mutex<[CacheKey: Flight]>([:])

    /// A client's place in a flight.
    struct Seat: Sendable {
        let flight: Flight
        let chunks: Flight.Subscription
        /// Whether this client started the flight (MISS) rather than joined one (COALESCED).
        let led: Bool
    }

    /// Joins the flight running for `key`, or starts one whose task runs `fill` and then ends it.
    /// - Parameters:
    ///   - shared: Whether other clients may join (a request that bypasses or refreshes the cache
    ///     neither joins nor is joined).
    ///   - limit: The bytes the flight keeps whole for clients that join late.
    ///   - finishingAbandoned: Whether the flight is filled to its end when every client has gone.
    ///   - fill: Starts the flight (``Flight/begin(_:)``), passes it its chunks and says how it ended.
    func join(
        _ key: CacheKey,
        shared: Bool,
        limit: Int,
        finishingAbandoned: Bool,
        fill: @escaping @Sendable (Flight) async -> Flight.Ending
    ) -> Seat {
        let seat = flights.withLock { flights in
            if shared, let running = flights[key], let chunks = running.subscribe() {
                return Seat(flight: running, chunks: chunks, led: false)
            }
            let (flight, chunks) = Flight.started(limit: limit, finishingAbandoned: finishingAbandoned)
            if shared { flights[key] = flight }
            return Seat(flight: flight, chunks: chunks, led: true)
        }
        if seat.led {
            let flight = seat.flight
            Task {
                let ending = await fill(flight)
                // Cleared before the end, so that a request after the end finds the stored entry instead.
                if shared {
                    flights.withLock { flights in
                        if flights[key] === flight { flights.removeValue(forKey: key) }
                    }
                }
                flight.end(ending)
            }
        }
        return seat
    }
}
