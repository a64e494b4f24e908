import Foundation
import GemcacheStore

/// A private PostgreSQL server for one test: a fresh cluster (`initdb`) in its own temporary directory,
/// listening on a free loopback port only, with trust authentication for the role `gemcache`. Run as
/// the `postgres` user when the tests run as root (PostgreSQL refuses to run as root). Needs Debian's
/// `postgresql` package (`make deps` installs it).
public final class PostgresServer: Sendable {
    public let port: Int
    let dataDirectory: String
    let binaries: String

    /// `store.shared` for this server.
    public var url: String { "postgres://gemcache@127.0.0.1:\(port)/postgres?sslmode=disable" }

    /// Creates the cluster and starts the server.
    public init() async throws {
        guard let binaries = Self.binaryDirectory() else {
            throw PostgresServerError("no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql: apt-get install postgresql")
        }
        self.binaries = binaries
        dataDirectory = "/tmp/gemcache-postgres-" + UUID().uuidString
        port = try freePortBelowEphemeralRange()
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        if getuid() == 0 { try FileManager.default.setAttributes([.ownerAccountName: "postgres"], ofItemAtPath: dataDirectory) }
        try await run("initdb", ["-D", dataDirectory + "/data", "-U", "gemcache", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"])
        try await start()
    }

    /// Starts (or restarts) the server and waits until it accepts connections.
    public func start() async throws {
        let options = "-p \(port) -c listen_addresses=127.0.0.1 -k \(dataDirectory) -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        let log = dataDirectory + "/server.log"
        do {
            try await run("pg_ctl", ["-D", dataDirectory + "/data", "-l", log, "-o", options, "-w", "-t", "30", "start"])
        } catch {
            let lines = (try? String(contentsOfFile: log, encoding: .utf8))?.split(separator: "\n").suffix(5) ?? []
            throw PostgresServerError("\(error); server.log ends: \(lines.joined(separator: " | "))")
        }
    }

    /// Stops the server at once (fast shutdown: open connections are closed).
    public func stop() async throws {
        try await run("pg_ctl", ["-D", dataDirectory + "/data", "-m", "fast", "-w", "stop"])
    }

    /// Stops the server and deletes the cluster.
    public func remove() async {
        try? await stop()
        try? FileManager.default.removeItem(atPath: dataDirectory)
    }

    /// Runs one SQL statement with `psql` as the role `gemcache` (tests that change rows behind the proxy's back).
    public func execute(_ sql: String) async throws {
        try await run("psql", ["-h", "127.0.0.1", "-p", "\(port)", "-U", "gemcache", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql])
    }

    /// Runs a PostgreSQL program to its end, as `postgres` when root; throws with its output on failure.
    ///
    /// Spawned directly rather than with Foundation's `Process`, which never saw `pg_ctl start` end (the
    /// server it leaves running held on to what `Process` watches for a child's exit).
    private func run(_ program: String, _ arguments: [String]) async throws {
        let path = binaries + "/" + program
        let command = getuid() == 0 ? ["/usr/sbin/runuser", "-u", "postgres", "--", path] + arguments : [path] + arguments
        let output = dataDirectory + "/\(program)-\(UUID().uuidString).out"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Nothing else of the test process: a server inheriting the proxies' sockets would keep
        // connections open that the proxies have closed.
        // (glibc has the action since 2.34; Swift does not import its declaration.)
        typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        guard let closeFrom = dlsym(dlopen(nil, RTLD_NOW), "posix_spawn_file_actions_addclosefrom_np") else {
            throw PostgresServerError("posix_spawn_file_actions_addclosefrom_np is missing (glibc older than 2.34)")
        }
        _ = unsafeBitCast(closeFrom, to: AddCloseFrom.self)(&actions, 3)
        let argv = command.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, command[0], &actions, nil, argv, environ)
        guard spawned == 0 else { throw PostgresServerError("could not start \(program): error \(spawned)") }
        var status: Int32 = 0
        // Real time is the subject: a real child process, polled without blocking a thread.
        while waitpid(pid, &status, WNOHANG) == 0 { try await Task.sleep(for: .milliseconds(20)) }
        // WIFEXITED and WEXITSTATUS, which Swift does not import.
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
            let text = FileManager.default.contents(atPath: output).map { String(decoding: $0, as: UTF8.self) } ?? ""
            throw PostgresServerError("\(program) failed (wait status \(status)): \(text)")
        }
    }

    /// The newest `/usr/lib/postgresql/<version>/bin` with initdb.
    private static func binaryDirectory() -> String? {
        let root = "/usr/lib/postgresql"
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return versions.compactMap(Int.init).sorted().reversed().map { "\(root)/\($0)/bin" }
            .first { FileManager.default.isExecutableFile(atPath: $0 + "/initdb") }
    }
}

public struct PostgresServerError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body` with a private PostgreSQL server that is stopped and deleted afterwards.
public func withPostgres<R>(_ body: (PostgresServer) async throws -> R) async throws -> R {
    let server = try await PostgresServer()
    do {
        let result = try await body(server)
        await server.remove()
        return result
    } catch {
        await server.remove()
        throw error
    }
}

/// A loopback port that is free now and below the kernel's ephemeral range, so that no connection
/// another test opens meanwhile (their local ports come from that range, as do listeners on port 0)
/// can take it before PostgreSQL binds it, or while a test has stopped the server to restart it.
func freePortBelowEphemeralRange() throws -> Int {
    let range = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))?
        .split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
    let ephemeralLow = range?.first ?? 32768
    for _ in 0..<100 {
        let port = Int.random(in: 10000..<max(ephemeralLow, 10001))
        if isFreeLoopbackPort(port) { return port }
    }
    throw PostgresServerError("no free loopback port below \(ephemeralLow)")
}

private func isFreeLoopbackPort(_ port: Int) -> Bool {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard descriptor >= 0 else { return false }
    defer { close(descriptor) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    return withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}
