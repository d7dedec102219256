// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "moepack",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "moepack", targets: ["moepack"]),
        .executable(name: "moepack-kernel-bench", targets: ["KernelBench"]),
        .executable(name: "moepack-fuzz", targets: ["FuzzDriver"]),
        .library(name: "MoERuntime", targets: ["MoERuntime"]),
        .library(name: "MoEConvert", targets: ["MoEConvert"]),
        .library(name: "MoEServe", targets: ["MoEServe"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.28.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.20.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
    ],
    targets: [
        // System libraries, found through pkg-config (tools/setup.sh installs them).
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd",
                       providers: [.apt(["libzstd-dev"]), .brew(["zstd"])]),
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"]), .brew(["openblas"])]),

        // Quantized and SIMD kernels in C, one portable path plus per-ISA paths chosen at start-up.
        .target(name: "MoEKernels",
                cSettings: [.unsafeFlags(["-O3"])]),

        // File formats: safetensors, config.json, .npy, the .mpk bundle. No compute.
        .target(name: "MoEFormat",
                dependencies: ["CZstd", "MoEKernels"]),

        // SentencePiece tokenizer and chat template.
        .target(name: "MoETokenizer",
                dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]),

        // Tensors, the model forward pass, KV cache, sampling, generation: embeddable by apps.
        .target(name: "MoERuntime",
                dependencies: ["MoEFormat", "MoETokenizer", "MoEKernels", "CBLAS"]),

        // Converter stages: calibrate, prune, quantize, pack; profiles.
        .target(name: "MoEConvert",
                dependencies: ["MoERuntime", "MoEFormat", "MoETokenizer", "MoEKernels", "CBLAS", "TOMLKit"]),

        // Bundles written in other engines' formats (GGUF for llama.cpp). No compute.
        .target(name: "MoEExport",
                dependencies: ["MoEFormat", "MoETokenizer", "MoEKernels"]),

        // OpenAI-compatible HTTP server over MoERuntime.
        .target(name: "MoEServe",
                dependencies: ["MoERuntime", "MoETokenizer", .product(name: "Hummingbird", package: "hummingbird"),
                               .product(name: "Logging", package: "swift-log"),
                               .product(name: "NIOCore", package: "swift-nio"),
                               .product(name: "HummingbirdCore", package: "hummingbird"),
                               .product(name: "NIOHTTP1", package: "swift-nio"),
                               .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                               .product(name: "HTTPTypes", package: "swift-http-types"),
                               .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]),

        // The command-line tool: thin, no logic of its own.
        .executableTarget(name: "moepack",
                          dependencies: ["MoEFormat", "MoETokenizer", "MoERuntime", "MoEConvert", "MoEServe", "MoEExport",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          // The built-in tiny model is read from the source tree (see BuiltinModel).
                          exclude: ["Resources"]),

        // Kernel throughput benchmark (weight GB/s per format against read bandwidth).
        .executableTarget(name: "KernelBench", dependencies: ["MoERuntime", "MoEFormat", "MoEKernels"]),

        // Fuzz targets over every parser of untrusted bytes, and their driver: it replays files,
        // or fuzzes when tools/fuzz.sh links libFuzzer in (see docs/fuzzing.md).
        .target(name: "MoEFuzz", dependencies: ["MoEFormat", "MoETokenizer", "MoERuntime", "MoEServe"]),
        .target(name: "CFuzzHooks"),
        .executableTarget(name: "FuzzDriver", dependencies: ["MoEFuzz", "CFuzzHooks"]),

        // Fixture paths and comparisons shared by the test targets.
        .target(name: "MoETestSupport", dependencies: ["MoEFormat"], path: "Sources/MoETestSupport"),

        .testTarget(name: "MoEFormatTests", dependencies: ["MoEFormat", "MoETestSupport"]),
        .testTarget(name: "MoETokenizerTests", dependencies: ["MoETokenizer"]),
        .testTarget(name: "MoERuntimeTests", dependencies: ["MoERuntime", "MoEFormat", "MoEKernels", "MoETokenizer", "MoETestSupport"]),
        .testTarget(name: "MoEConvertTests", dependencies: ["MoEConvert", "MoERuntime", "MoEFormat", "MoEKernels", "MoETokenizer", "MoETestSupport"]),
        .testTarget(name: "MoEServeTests", dependencies: ["MoEServe", "MoERuntime", "MoETokenizer", "MoETestSupport",
                                                         .product(name: "Logging", package: "swift-log"),
                                                         .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]),
        .testTarget(name: "MoEFuzzTests", dependencies: ["MoEFuzz"]),
        .testTarget(name: "MoEExportTests", dependencies: ["MoEExport", "MoEConvert", "MoERuntime", "MoEFormat", "MoETestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["moepack", "MoEFormat", "MoETestSupport"]),
    ]
)
