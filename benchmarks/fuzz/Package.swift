// swift-tools-version: 6.0
// The libFuzzer target over the request normalizer, the key builder and the fast path's head parser.
// It compiles those files of GemcacheCore (symlinked into Sources/GemcacheKey) on their own, so that a
// fuzzer build instruments only them; run it with benchmarks/fuzz.sh.
import PackageDescription

let package = Package(
    name: "GemcacheFuzz",
    targets: [
        .systemLibrary(name: "CLibCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // libm: the key code rounds Doubles, and no Foundation import brings libm along any more.
        .target(name: "GemcacheKey", dependencies: ["CLibCrypto"], linkerSettings: [.linkedLibrary("m")]),
        .executableTarget(name: "GemcacheFuzz", dependencies: ["GemcacheKey"]),
    ]
)
