// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "swift-clip",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "CLIPKit", targets: ["CLIPKit"]),
        .executable(name: "clip", targets: ["CLIPCommand"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        // clip serve: HTTP (Hummingbird 2, without its swift-configuration trait), multipart bodies (immich sends
        // form data), Prometheus metrics through swift-metrics, logs through swift-log.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0", traits: ["FullFoundation"]),
        .package(url: "https://github.com/vapor/multipart-kit", from: "4.7.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.9.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.14.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.34.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    ],
    targets: [
        // Files that come from users: non-blocking opens of regular files only, checked reads, atomic output.
        .target(name: "CLIPFiles", dependencies: ["CCLIPKernels"], path: "Sources/Inputs/CLIPFiles"),
        // Hot kernels in C with run-time CPU dispatch: SGEMM, attention, element-wise, vector scans, SHA-256.
        .target(name: "CCLIPKernels", path: "Sources/C/CCLIPKernels"),
        // Tensor type and the numeric operations every layer is built from.
        .target(name: "CLIPTensor", dependencies: ["CCLIPKernels"], path: "Sources/Model/CLIPTensor"),
        .systemLibrary(name: "CZlib", path: "Sources/C/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"]), .brew(["zlib"])]),
        // Weight-file readers (safetensors, PyTorch zip archives, TorchScript); know nothing about CLIP's architecture.
        .target(name: "CLIPWeights", dependencies: ["CLIPTensor", "CLIPFiles", "CZlib"], path: "Sources/Model/CLIPWeights"),
        // The reference BPE tokenizer and its text cleaning; independent of the model.
        .target(name: "CLIPTokenizer", path: "Sources/Inputs/CLIPTokenizer", resources: [.copy("Resources")]),
        // Image codecs from the system (libjpeg-turbo, libpng, libwebp), wrapped in C for setjmp-based errors.
        .systemLibrary(name: "CJPEG", path: "Sources/C/CJPEG", pkgConfig: "libjpeg", providers: [.apt(["libjpeg-dev"]), .brew(["jpeg-turbo"])]),
        .systemLibrary(name: "CPNG", path: "Sources/C/CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"]), .brew(["libpng"])]),
        .systemLibrary(name: "CWebP", path: "Sources/C/CWebP", pkgConfig: "libwebp", providers: [.apt(["libwebp-dev"]), .brew(["webp"])]),
        // HEIC (iPhones) through libheif with its HEVC decoder; AVIF through libavif, as Pillow reads it.
        .systemLibrary(name: "CHeif", path: "Sources/C/CHeif", pkgConfig: "libheif", providers: [.apt(["libheif-dev"]), .brew(["libheif"])]),
        .systemLibrary(name: "CAvif", path: "Sources/C/CAvif", pkgConfig: "libavif", providers: [.apt(["libavif-dev"]), .brew(["libavif"])]),
        // GIF through giflib, TIFF through libtiff (BMP is read by hand: bmp.c says why).
        .systemLibrary(name: "CGif", path: "Sources/C/CGif", pkgConfig: "libgif", providers: [.apt(["libgif-dev"]), .brew(["giflib"])]),
        .systemLibrary(name: "CTiff", path: "Sources/C/CTiff", pkgConfig: "libtiff-4", providers: [.apt(["libtiff-dev"]), .brew(["libtiff"])]),
        // Camera RAW through LibRaw's thread-safe build.
        .systemLibrary(name: "CRaw", path: "Sources/C/CRaw", pkgConfig: "libraw_r", providers: [.apt(["libraw-dev"]), .brew(["libraw"])]),
        // Videos through FFmpeg (libavformat, libavcodec, libswscale, libavutil).
        .systemLibrary(name: "CFFmpeg", path: "Sources/C/CFFmpeg", pkgConfig: "libavformat",
                       providers: [.apt(["libavformat-dev", "libavcodec-dev", "libswscale-dev"]), .brew(["ffmpeg"])]),
        // On Linux video.c opens FFmpeg with dlopen at the first video (libavformat alone brings 134 shared libraries
        // that every process would load at start), and finds its headers in the multiarch include directory; elsewhere
        // it is linked.
        .target(name: "CCLIPImage", dependencies: ["CJPEG", "CPNG", "CWebP", "CHeif", "CAvif", "CGif", "CTiff", "CRaw",
                                                   .target(name: "CFFmpeg", condition: .when(platforms: [.macOS]))],
                path: "Sources/C/CCLIPImage",
                // libavformat's pkg-config names only itself; the libraries video.c calls directly:
                linkerSettings: [.linkedLibrary("avcodec", .when(platforms: [.macOS])),
                                 .linkedLibrary("swscale", .when(platforms: [.macOS])),
                                 .linkedLibrary("avutil", .when(platforms: [.macOS])), .linkedLibrary("webpdemux"),
                                 .linkedLibrary("dl", .when(platforms: [.linux, .android]))]),
        // Image decoding and the reference preprocessing; independent of the model.
        .target(name: "CLIPImage", dependencies: ["CCLIPImage", "CLIPTensor", "CLIPFiles"], path: "Sources/Inputs/CLIPImage"),
        // Neural-network layers that load their own named parameters.
        .target(name: "CLIPLayers", dependencies: ["CLIPTensor", "CLIPWeights"], path: "Sources/Model/CLIPLayers"),
        // The CLIP model: architecture inference, image and text towers, logits.
        .target(name: "CLIP", dependencies: ["CLIPTensor", "CLIPWeights", "CLIPLayers", "CLIPFiles"], path: "Sources/Model/CLIP"),
        // Training: the contrastive loss, AdamW, the schedule, the training loop, checkpoints and data.
        .target(name: "CLIPData", dependencies: ["CLIPFiles", "CLIPImage"], path: "Sources/Inputs/CLIPData"),

        .target(name: "CLIPLoading", dependencies: ["CLIP", "CLIPImage", "CLIPLayers", "CLIPTensor", "CLIPWeights", "CLIPFiles", "CLIPTokenizer"], path: "Sources/Loading/CLIPLoading"),

        .target(name: "CLIPTraining", dependencies: ["CLIP", "CLIPData", "CLIPLoading", "CLIPHub", "CLIPLayers", "CLIPTensor", "CLIPWeights", "CLIPFiles", "CLIPImage", "CLIPTokenizer"], path: "Sources/Apps/CLIPTraining"),
        // Named models: OpenAI's URLs, the download cache, SHA-256 verification.
        .target(name: "CLIPHub", dependencies: ["CLIP", "CLIPLoading", "CLIPFiles"], path: "Sources/Loading/CLIPHub", resources: [.copy("Resources")]),
        // The seed example as an API: model + preprocessing + tokenizer, zero-shot classification, similarity.
        .target(name: "CLIPKit", dependencies: ["CLIP", "CLIPData", "CLIPLoading", "CLIPHub", "CLIPImage", "CLIPTokenizer", "CLIPFiles"], path: "Sources/Kit/CLIPKit"),
        // A searchable photo library: the SQLite index (through GRDB), incremental crash-safe indexing, composed
        // queries and the vector scan.
        .target(name: "CLIPIndex", dependencies: ["CLIPKit", "CLIPData", "CLIPEmbedding", "CLIPImage", "CLIPFiles", "CLIPTensor",
                                                  "CSQLiteGuard", .product(name: "GRDB", package: "GRDB.swift"),
                                                  .product(name: "GRDBSQLite", package: "GRDB.swift")], path: "Sources/Apps/CLIPIndex"),
        // SQLite's defensive settings for index files that may be hostile (sqlite3_db_config is variadic: C).
        .target(name: "CSQLiteGuard", dependencies: [.product(name: "GRDBSQLite", package: "GRDB.swift")], path: "Sources/C/CSQLiteGuard"),
        // Embedding at scale: a worker that streams inputs into clip-retrieval's layout, one partition per task.
        .target(name: "CLIPEmbedding", dependencies: ["CLIPKit", "CLIPData", "CLIPImage", "CLIPTensor", "CLIPFiles"], path: "Sources/Apps/CLIPEmbedding"),
        // `clip serve`: the HTTP API (OpenAI embeddings, immich's /predict, clip-retrieval's back end, the search
        // page) over one dynamic batcher per tower.
        .target(name: "CLIPServer", dependencies: ["CLIPKit", "CLIPHub", "CLIPIndex", "CLIPImage", "CLIPFiles", "CLIPTensor", "CLIPTokenizer",
                                                   .product(name: "Hummingbird", package: "hummingbird"),
                                                   .product(name: "MultipartKit", package: "multipart-kit"),
                                                   .product(name: "Prometheus", package: "swift-prometheus"),
                                                   .product(name: "Metrics", package: "swift-metrics"),
                                                   .product(name: "Logging", package: "swift-log"),
                                                   .product(name: "NIOCore", package: "swift-nio"),
                                                   .product(name: "NIOHTTP1", package: "swift-nio"),
                                                   .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                                                   .product(name: "HTTPTypes", package: "swift-http-types")], path: "Sources/Apps/CLIPServer",
                resources: [.copy("Resources")]),
        // What the `clip` subcommands share: the error line, model options, output files, JSON.
        .target(name: "CLIPCommandSupport", dependencies: ["CLIPKit", "CLIPFiles", .product(name: "ArgumentParser", package: "swift-argument-parser")], path: "Sources/Commands/CLIPCommandSupport"),
        // `clip bench`: timing the model, the kernels, the tokenizer and preprocessing, kept apart from the
        // user-facing commands (the only command code that talks to the kernels).
        .target(name: "CLIPBench", dependencies: ["CLIPCommandSupport", "CLIPKit", "CLIPHub", "CLIPIndex", "CCLIPKernels", .product(name: "ArgumentParser", package: "swift-argument-parser")], path: "Sources/Commands/CLIPBench"),
        .executableTarget(
            name: "CLIPCommand",
            dependencies: ["CLIPKit", "CLIPData", "CLIPLoading", "CLIPCommandSupport", "CLIPBench", "CLIPTensor", "CLIPTraining", "CLIPIndex", "CLIPEmbedding", "CLIPServer", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/Commands/CLIPCommand"
        ),
        // Fuzz entry points for the untrusted-input parsers (Scripts/fuzz/run_fuzzers.sh); built normally it replays
        // the committed corpora.
        .executableTarget(name: "clip-fuzz-replay", dependencies: ["CLIPWeights", "CLIPImage", "CLIPFiles", "CLIPTokenizer"],
                          path: "Sources/Commands/CLIPFuzz"),
        .testTarget(name: "CLIPFilesTests", dependencies: ["CLIPFiles"]),
        .testTarget(name: "CLIPDataTests", dependencies: ["CLIPData", "CLIPFiles", "CLIPTestSupport"]),
        .testTarget(name: "CLIPTensorTests", dependencies: ["CLIPTensor", "CCLIPKernels"]),
        .testTarget(name: "CLIPLayersTests", dependencies: ["CLIPLayers", "CLIPTensor"]),
        .testTarget(name: "CLIPWeightsTests", dependencies: ["CLIPWeights", "CLIPTensor", "CLIPFiles"]),
        .testTarget(name: "CLIPImageTests", dependencies: ["CLIPImage", "CCLIPImage", "CLIPTensor", "CLIPWeights"], resources: [.copy("Fixtures")]),
        .testTarget(name: "CLIPTrainingTests", dependencies: ["CLIPTraining", "CLIP", "CLIPLayers", "CLIPWeights", "CLIPFiles", "CLIPTestSupport"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "CLIPIndexTests", dependencies: ["CLIPIndex", "CLIPKit", "CLIPImage", "CLIPTestSupport", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "CLIPEmbeddingTests", dependencies: ["CLIPEmbedding", "CLIPKit", "CLIPImage", "CLIPFiles", "CLIPTestSupport"]),
        .testTarget(name: "CLIPServerTests", dependencies: ["CLIPServer", "CLIPKit", "CLIPIndex", "CLIPImage", "CLIPTestSupport",
                                                            .product(name: "Hummingbird", package: "hummingbird"),
                                                            .product(name: "HummingbirdTesting", package: "hummingbird")],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "CLIPHubTests", dependencies: ["CLIPHub", "CLIP", "CLIPLoading", "CLIPFiles", "CLIPTestSupport"], exclude: ["Fixtures"]),
        // Fixture paths and the seed-example reference, shared by the two test targets that run it.
        .target(name: "CLIPTestSupport", path: "Tests/CLIPTestSupport"),
        .testTarget(name: "CLIPKitTests", dependencies: ["CLIPKit", "CLIPTestSupport"]),
        .testTarget(name: "CLIPCommandTests", dependencies: ["CLIPCommand", "CLIPKit", "CLIPTestSupport"]),
        .testTarget(name: "CLIPTokenizerTests", dependencies: ["CLIPTokenizer"], resources: [.copy("Fixtures")]),
        .testTarget(
            name: "CLIPTests",
            dependencies: ["CLIP", "CLIPLoading", "CLIPImage", "CLIPLayers", "CLIPWeights", "CLIPTensor"],
            resources: [.copy("Fixtures")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
