import CCLIPKernels

/// The instruction sets the kernels may use on this machine, as decided in one place (the C layer's `cpu.c`): what
/// the CPU and OS support, limited by the `CLIP_CPU` environment variable (`portable`, `avx2`, `avx512`, `neon`, or
/// `native`). `CLIP_CPU=avx2` on an AVX-512 machine runs exactly what an AVX2-only machine runs.
public enum CPU {
    /// The level the kernels run at: "avx512", "avx2", "neon" or "portable".
    public static var level: String {
        switch Int(clip_cpu_level()) {
        case Int(CLIP_LEVEL_AVX512.rawValue): return "avx512"
        case Int(CLIP_LEVEL_AVX2.rawValue): return "avx2"
        case Int(CLIP_LEVEL_NEON.rawValue): return "neon"
        default: return "portable"
        }
    }

    /// Names of the extensions the kernels may use (after `CLIP_CPU`), e.g. ["AVX2+FMA", "AVX-512", "AVX512-VNNI"].
    public static var features: [String] { names(clip_cpu_features()) }

    /// Names of the extensions the CPU has, whatever `CLIP_CPU` says.
    public static var hardwareFeatures: [String] { names(clip_cpu_hardware()) }

    /// A message when `CLIP_CPU` names an unknown level or one this CPU lacks; programs must refuse to run then.
    public static var configurationError: String? { clip_cpu_error().map { String(cString: $0) } }

    /// Throws when `CLIP_CPU` cannot be honoured.
    public static func validate() throws(TensorError) {
        if let configurationError { throw .cpuConfiguration(configurationError) }
    }

    /// Whether the kernels may use `feature` (one of `CPU.Feature`).
    public static func has(_ feature: Feature) -> Bool { clip_cpu_features() & feature.rawValue != 0 }

    /// Extensions the kernels distinguish.
    public struct Feature: Sendable, Hashable {
        /// The bit `clip_cpu_features()` sets for this feature.
        public let rawValue: UInt32
        /// The name error messages and `clip bench` print.
        public let name: String
        /// AVX2 with FMA (x86-64 since Haswell and Zen 1).
        public static let avx2 = Feature(rawValue: UInt32(CLIP_CPU_AVX2), name: "AVX2+FMA")
        /// AVX-512 F, BW, DQ and VL (Skylake-SP, Ice Lake, Zen 4).
        public static let avx512 = Feature(rawValue: UInt32(CLIP_CPU_AVX512), name: "AVX-512")
        /// AVX-512 VNNI: 8-bit dot products for int8.
        public static let avx512VNNI = Feature(rawValue: UInt32(CLIP_CPU_AVX512_VNNI), name: "AVX512-VNNI")
        /// AVX-512 BF16: bf16 dot products for bf16.
        public static let avx512BF16 = Feature(rawValue: UInt32(CLIP_CPU_AVX512_BF16), name: "AVX512-BF16")
        /// AVX-VNNI (VEX-encoded VNNI on AVX2 machines such as Alder Lake); detected, no kernel uses it yet.
        public static let avxVNNI = Feature(rawValue: UInt32(CLIP_CPU_AVX_VNNI), name: "AVX-VNNI")
        /// Advanced SIMD on arm64.
        public static let neon = Feature(rawValue: UInt32(CLIP_CPU_NEON), name: "NEON")
        /// arm64 SDOT/UDOT 8-bit dot products (Apple M1, Graviton 2 and later).
        public static let neonDotProd = Feature(rawValue: UInt32(CLIP_CPU_NEON_DOTPROD), name: "NEON DotProd")
        /// x86 SHA extensions: content hashes of indexed files.
        public static let sha = Feature(rawValue: UInt32(CLIP_CPU_SHA), name: "SHA")
        /// Every feature, in the order `clip bench` lists them.
        public static let all: [Feature] = [.avx2, .avx512, .avx512VNNI, .avx512BF16, .avxVNNI, .neon, .neonDotProd, .sha]
    }

    private static func names(_ mask: UInt32) -> [String] {
        Feature.all.filter { mask & $0.rawValue != 0 }.map(\.name)
    }
}
