import Foundation
import Testing
import Yams

/// docker-compose.yml and the Dockerfile, checked without a Docker engine: the compose file parses and
/// names only services, images, volumes and files that exist, its ports agree with the listen settings,
/// and the Dockerfile builds and installs what the Makefile does.
@Suite
struct DeploymentFilesTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func text(_ name: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(name), encoding: .utf8)
    }

    static func compose() throws -> [String: Any] {
        try #require(try Yams.load(yaml: text("docker-compose.yml")) as? [String: Any])
    }

    static func services() throws -> [String: [String: Any]] {
        try #require(try compose()["services"] as? [String: [String: Any]])
    }

    /// The Dockerfile's stages, each a list of `(instruction, arguments)` with continuation lines joined.
    static func dockerStages() throws -> [[(instruction: String, arguments: String)]] {
        let joined = try text("Dockerfile").replacingOccurrences(of: "\\\n", with: " ")
        var stages: [[(instruction: String, arguments: String)]] = []
        for line in joined.split(separator: "\n") where !line.hasPrefix("#") && !line.trimmingCharacters(in: .whitespaces).isEmpty {
            let parts = line.split(separator: " ", maxSplits: 1)
            let instruction = String(parts[0]).uppercased()
            if instruction == "FROM" { stages.append([]) }
            stages[stages.count - 1].append((instruction, parts.count > 1 ? String(parts[1]) : ""))
        }
        return stages
    }

    /// The packages of every `apt-get install` in a stage.
    static func aptPackages(_ stage: [(instruction: String, arguments: String)]) -> Set<String> {
        var packages: Set<String> = []
        for (instruction, arguments) in stage where instruction == "RUN" {
            for command in arguments.components(separatedBy: "&&") where command.contains("apt-get install") {
                let words = command.split(whereSeparator: \.isWhitespace).drop { $0 != "install" }.dropFirst()
                packages.formUnion(words.filter { !$0.hasPrefix("-") }.map(String.init))
            }
        }
        return packages
    }

    /// The ENV settings of a stage.
    static func environment(_ stage: [(instruction: String, arguments: String)]) -> [String: String] {
        var values: [String: String] = [:]
        for (instruction, arguments) in stage where instruction == "ENV" {
            for pair in arguments.split(whereSeparator: \.isWhitespace) {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { values[String(parts[0])] = String(parts[1]) }
            }
        }
        return values
    }

    /// `APT_PACKAGES` and the recipe of `build` in the Makefile, with `$(SWIFT)` as `swift`.
    static func makefile() throws -> (packages: [String], build: String) {
        let lines = try text("Makefile").split(separator: "\n", omittingEmptySubsequences: false)
        let packages = try #require(lines.first { $0.hasPrefix("APT_PACKAGES :=") }).dropFirst("APT_PACKAGES :=".count)
        let target = try #require(lines.firstIndex { $0.hasPrefix("build:") })
        let recipe = lines[lines.index(after: target)].trimmingCharacters(in: .whitespaces)
        return (packages.split(separator: " ").map(String.init), recipe.replacingOccurrences(of: "$(SWIFT)", with: "swift"))
    }

    static func seconds(_ duration: String) throws -> Int {
        let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600]
        let unit = duration.last.flatMap { units[$0] }
        return try #require(Int(unit == nil ? duration : String(duration.dropLast()))) * (unit ?? 1)
    }

    @Test func servicesAndProfilesNameOnlyWhatExists() throws {
        let services = try Self.services()
        #expect(
            Set(services.keys) == [
                "gemcache", "mock-upstream", "gemcache-demo", "demo-load", "postgres", "gemcache-shared-a", "gemcache-shared-b", "prometheus",
                "grafana",
            ]
        )
        #expect(services["gemcache"]?["profiles"] == nil, "the proxy starts without a profile")
        let demo = services.filter { ($0.value["profiles"] as? [String]) == ["demo"] }.keys
        #expect(Set(demo) == ["mock-upstream", "gemcache-demo", "demo-load"])
        let shared = services.filter { ($0.value["profiles"] as? [String]) == ["shared"] }.keys
        #expect(Set(shared) == ["postgres", "gemcache-shared-a", "gemcache-shared-b"])
        let observability = services.filter { ($0.value["profiles"] as? [String]) == ["observability"] }.keys
        #expect(Set(observability) == ["prometheus", "grafana"])
        // Both instances reach the PostgreSQL service by name, as the role and database it creates.
        let postgres = (services["postgres"]?["environment"] as? [String: Any])?.mapValues { "\($0)" } ?? [:]
        for instance in ["gemcache-shared-a", "gemcache-shared-b"] {
            let environment = (services[instance]?["environment"] as? [String: Any])?.mapValues { "\($0)" } ?? [:]
            let url = try #require(environment["GEMCACHE_STORE_SHARED"].flatMap(URLComponents.init(string:)))
            #expect(url.host == "postgres" && url.user == postgres["POSTGRES_USER"] && url.path == "/" + (postgres["POSTGRES_DB"] ?? ""))
        }
        for (name, service) in services {
            let dependencies = (service["depends_on"] as? [String: Any])?.keys.map { $0 } ?? []
            for dependency in dependencies {
                #expect(services[dependency] != nil, "\(name) depends on \(dependency), which is not a service")
                let profile = (services[dependency]?["profiles"] as? [String]) ?? []
                #expect(profile.isEmpty || profile == (service["profiles"] as? [String]), "\(name) depends on \(dependency) of another profile")
            }
        }
        // The demo proxy calls the mock, the load generator calls the demo proxy, by service name and port.
        let mockCommand = try #require(services["mock-upstream"]?["command"] as? [String])
        #expect(mockCommand.starts(with: ["mock-upstream", "--host", "0.0.0.0"]))
        let mockPort = try #require(mockCommand.firstIndex(of: "--port").map { mockCommand[$0 + 1] })
        let demoCommand = try #require(services["gemcache-demo"]?["command"] as? [String])
        #expect(demoCommand.contains("http://mock-upstream:\(mockPort)"))
        let loadCommand = try #require(services["demo-load"]?["command"] as? [String])
        #expect(loadCommand.last == "http://gemcache-demo:\(try Self.listenPort(services["gemcache-demo"]!))")
    }

    /// Prometheus scrapes the proxy service on its listen port; Grafana's data source has the uid the
    /// dashboard asks for.
    @Test func theObservabilityProfileScrapesTheProxyAndFeedsTheDashboard() throws {
        let prometheus = try #require(try Yams.load(yaml: Self.text("observability/prometheus.yml")) as? [String: Any])
        let job = try #require((prometheus["scrape_configs"] as? [[String: Any]])?.first)
        let targets = (job["static_configs"] as? [[String: Any]])?.first?["targets"] as? [String]
        #expect(targets == ["gemcache:\(try Self.listenPort(try #require(try Self.services()["gemcache"])))"])
        #expect(job["metrics_path"] as? String == "/metrics")
        let sources = try #require(
            try Yams.load(yaml: Self.text("observability/grafana/provisioning/datasources/prometheus.yml")) as? [String: Any]
        )
        let uid = (sources["datasources"] as? [[String: Any]])?.first?["uid"] as? String
        let dashboard = try #require(
            try JSONSerialization.jsonObject(with: Data(Self.text("observability/grafana/dashboards/gemcache.json").utf8)) as? [String: Any]
        )
        let panelSources = (dashboard["panels"] as? [[String: Any]] ?? []).map { ($0["datasource"] as? [String: Any])?["uid"] as? String }
        #expect(!panelSources.isEmpty && panelSources.allSatisfy { $0 == uid })
    }

    @Test func everyServiceRunsTheBuiltImageOrAPinnedOne() throws {
        let services = try Self.services()
        let built = services.values.filter { $0["build"] != nil }
        #expect(!built.isEmpty)
        let tags = Set(built.compactMap { $0["image"] as? String })
        #expect(tags.count == 1, "every built service names the same image tag")
        for (name, service) in services {
            if let context = service["build"] as? String {
                #expect(FileManager.default.fileExists(atPath: Self.root.appendingPathComponent(context).appendingPathComponent("Dockerfile").path))
            } else {
                let image = try #require(service["image"] as? String, "\(name) has neither build nor image")
                #expect(!tags.contains(image), "\(name) uses the built image without building it (it would be pulled)")
                let tag = image.split(separator: ":").dropFirst().first
                #expect(tag != nil && tag != "latest", "\(name): pin the image \(image) to a version")
            }
        }
    }

    /// The port a `serve` service listens on: its GEMCACHE_LISTEN_PORT, else the Dockerfile's.
    static func listenPort(_ service: [String: Any]) throws -> String {
        let runStage = try #require(try dockerStages().last)
        let environment = (service["environment"] as? [String: Any])?.mapValues { "\($0)" } ?? [:]
        return try #require(environment["GEMCACHE_LISTEN_PORT"] ?? Self.environment(runStage)["GEMCACHE_LISTEN_PORT"])
    }

    @Test func portsAndVolumesAgreeWithTheListenAndStoreSettings() throws {
        let compose = try Self.compose()
        let services = try Self.services()
        let declared = Set((compose["volumes"] as? [String: Any])?.keys.map { $0 } ?? [])
        var used: Set<String> = []
        for (name, service) in services {
            for volume in service["volumes"] as? [String] ?? [] {
                let source = String(volume.split(separator: ":")[0])
                if source.hasPrefix(".") || source.hasPrefix("/") {
                    #expect(FileManager.default.fileExists(atPath: Self.root.appendingPathComponent(source).path), "\(name) mounts missing \(source)")
                    #expect(volume.hasSuffix(":ro"), "\(name) mounts \(source) writable")
                } else {
                    #expect(declared.contains(source), "\(name) uses the undeclared volume \(source)")
                    used.insert(source)
                }
            }
            guard (service["command"] as? [String])?.first == "serve" else { continue }
            let environment = (service["environment"] as? [String: Any])?.mapValues { "\($0)" } ?? [:]
            #expect(environment["GEMCACHE_LISTEN_HOST"] == "0.0.0.0", "\(name) must listen beyond the container's loopback")
            let port = try Self.listenPort(service)
            for published in service["ports"] as? [String] ?? [] {
                #expect(published.hasPrefix("127.0.0.1:"), "\(name) publishes \(published) beyond the host's loopback")
                #expect(published.split(separator: ":").last.map(String.init) == port, "\(name) publishes \(published) but listens on \(port)")
            }
            let store = try #require(environment["GEMCACHE_STORE_PATH"])
            #expect(
                (service["volumes"] as? [String] ?? []).contains { $0.hasSuffix(":" + store) && !$0.hasPrefix(".") },
                "\(name) keeps its store outside a named volume"
            )
            let grace = try Self.seconds(try #require(service["stop_grace_period"] as? String))
            #expect(grace > 120, "\(name): stop_grace_period must outlast a graceful shutdown (upstream.timeout 120s)")
        }
        #expect(used == declared, "declared volumes nobody uses: \(declared.subtracting(used))")
    }

    @Test func secretsComeFromTheEnvironmentOnly() throws {
        for (name, service) in try Self.services() {
            let environment = (service["environment"] as? [String: Any])?.mapValues { "\($0)" } ?? [:]
            for secret in ["GEMINI_API_KEY", "GEMCACHE_CLIENT_TOKENS", "GEMCACHE_ADMIN_TOKEN", "GEMCACHE_SCOPE_SALT", "PGPASSWORD"] {
                guard let value = environment[secret] else { continue }
                #expect(value.hasPrefix("${\(secret)"), "\(name) sets \(secret) in the file instead of passing it through")
            }
        }
    }

    @Test func theDockerfileBuildsAndInstallsWhatTheMakefileDoes() throws {
        let stages = try Self.dockerStages()
        #expect(stages.count == 2)
        let (build, run) = (stages[0], stages[1])
        let makefile = try Self.makefile()
        #expect(makefile.build == "swift build -c release --product gemcache")
        #expect(
            build.contains { $0.instruction == "RUN" && $0.arguments.contains(makefile.build) },
            "the Dockerfile builds otherwise than `make build`"
        )
        #expect(build.contains { $0.instruction == "RUN" && $0.arguments.contains("cp .build/release/gemcache ") })
        #expect(run.contains { $0.instruction == "ENTRYPOINT" && $0.arguments == #"["gemcache"]"# })
        #expect(Set(makefile.packages).isSubset(of: Self.aptPackages(build)), "the build stage lacks some of the Makefile's APT_PACKAGES")
        // Each -dev package's library (its first dependency, as dpkg says on Debian) is in the run stage.
        let runtime: [String: String] = ["liblmdb-dev": "liblmdb0", "libssl-dev": "libssl3", "zlib1g-dev": "zlib1g"]
        for package in makefile.packages where package.hasSuffix("-dev") {
            let library = try #require(runtime[package], "add the run-time package of \(package) here and to the Dockerfile")
            #expect(Self.aptPackages(run).contains(library), "the run stage lacks \(library) for \(package)")
            if let depends = Self.dpkgDepends(package) { #expect(depends.hasPrefix(library + " ")) }
        }
    }

    /// `Depends` of an installed Debian package, or nil without dpkg.
    static func dpkgDepends(_ package: String) -> String? {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/dpkg-query") else { return nil }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/dpkg-query")
        process.arguments = ["-W", "-f=${Depends}", package]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return process.terminationStatus == 0 ? output : nil
    }

    @Test func theImagesMatchTheToolchainAndTheRuntimeIsSafe() throws {
        let stages = try Self.dockerStages()
        let (build, run) = (stages[0], stages[1])
        let builder = try #require(build.first?.arguments)
        let match = try #require(builder.firstMatch(of: /^swift:(\d+)\.(\d+)-(\w+) AS build$/), "build stage: \(builder)")
        let tools = try #require(try Self.text("Package.swift").firstMatch(of: /swift-tools-version:(\d+)\.(\d+)/))
        #expect((Int(match.1)!, Int(match.2)!) >= (Int(tools.1)!, Int(tools.2)!), "the build image is older than the tools version")
        #expect(run.first?.arguments == "debian:\(match.3)-slim", "run on the Debian release the binary was built on")
        #expect(run.contains { $0.instruction == "USER" && $0.arguments != "root" && $0.arguments != "0" })
        let port = try #require(Self.environment(run)["GEMCACHE_LISTEN_PORT"])
        #expect(Self.environment(run)["GEMCACHE_LISTEN_HOST"] == "0.0.0.0")
        #expect(run.contains { $0.instruction == "EXPOSE" && $0.arguments == port })
        let health = try #require(run.first { $0.instruction == "HEALTHCHECK" }?.arguments)
        #expect(health.contains("http://127.0.0.1:${GEMCACHE_LISTEN_PORT}/healthz"))
        #expect(Self.aptPackages(run).isSuperset(of: ["curl", "tzdata", "ca-certificates"]), "the health check, the quota day and https need these")
        let ignored = try Self.text(".dockerignore").split(separator: "\n").map(String.init)
        #expect(ignored.contains(".build"), "the build context would carry .build")
    }
}
