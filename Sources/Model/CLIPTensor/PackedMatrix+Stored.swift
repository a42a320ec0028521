import CCLIPKernels

/// What a packed-weight cache file stores of a packed matrix, and how one is rebuilt from a mapped file without
/// copying: the kernel's own panel layout, which only this machine's kernel level reads.
extension PackedMatrix {
    /// Bytes per element of each stored array, in order: the values (fp32, bf16, or int8 codes), then for int8 the
    /// per-column scales and sums.
    package static func storedElementSizes(_ precision: Precision) -> [Int] {
        switch precision {
        case .fp32: return [4]
        case .bf16: return [2]
        case .int8: return [1, 4, 4]
        }
    }

    /// Elements of each stored array for B [k, n] packed for `kernel` in `precision`; nil for a kernel that does not
    /// run `precision` on this CPU.
    package static func storedCounts(kernel: GEMMKernel, precision: Precision, k: Int, n: Int) -> [Int]? {
        // Bounds before the C size functions, whose arithmetic is unchecked: no layer comes near 2^24 per side.
        guard kernel != .auto, precision.kernels.contains(kernel), (0...(1 << 24)).contains(k), (0...(1 << 24)).contains(n)
        else { return nil }
        let code = kernel.code
        switch precision {
        case .fp32: return [max(Int(clip_packed_b_count(code, k, n)), 0)]
        case .bf16: return [max(Int(clip_packed_b_bf16_count(k, n)), 0)]
        case .int8:
            let columns = max(Int(clip_packed_b_int8_columns(code, n)), 0)
            return [max(Int(clip_packed_b_int8_bytes(code, k, n)), 0), columns, columns]
        }
    }

    /// The int8 layout's k-group (consecutive k per column side by side), or 0 for other precisions.
    package var storedGroup: Int {
        if case .int8(_, _, _, let g) = storage { return g }
        return 0
    }

    /// Whether every int8 per-column scale is finite (true for other precisions).
    package var storedScalesAreFinite: Bool {
        guard case .int8(_, let scales, _, _) = storage else { return true }
        return scales.withUnsafeBufferPointer { $0.allSatisfy(\.isFinite) }
    }

    /// Calls `body` with the bytes of each stored array, in the order of `storedElementSizes`.
    package func withStoredBytes<R>(_ body: ([UnsafeRawBufferPointer]) throws -> R) rethrows -> R {
        switch storage {
        case .fp32(let data):
            return try data.withUnsafeBufferPointer { try body([UnsafeRawBufferPointer($0)]) }
        case .bf16(let halves):
            return try halves.withUnsafeBufferPointer { try body([UnsafeRawBufferPointer($0)]) }
        case .int8(let codes, let scales, let sums, _):
            return try codes.withUnsafeBufferPointer { c in
                try scales.withUnsafeBufferPointer { s in
                    try sums.withUnsafeBufferPointer { u in
                        try body([UnsafeRawBufferPointer(c), UnsafeRawBufferPointer(s), UnsafeRawBufferPointer(u)])
                    }
                }
            }
        }
    }

    /// B [k, n] packed for `kernel` in `precision`, its arrays at byte `offsets` of `file` (nothing is copied).
    /// Returns nil unless the kernel runs here, each array lies inside the file at an aligned offset, and (int8)
    /// `group` is the kernel's: a foreign or damaged file is never read out of bounds.
    package init?(name: String, k: Int, n: Int, kernel: GEMMKernel, precision: Precision, group: Int,
                  file: MappedFile, offsets: [Int]) {
        guard let counts = Self.storedCounts(kernel: kernel, precision: precision, k: k, n: n),
              offsets.count == counts.count else { return nil }
        let code = kernel.code
        switch precision {
        case .fp32:
            guard let values = Elements<Float>(file: file, offset: offsets[0], count: counts[0]) else { return nil }
            storage = .fp32(values)
            panel = Int(clip_gemm_panel_width(code))
        case .bf16:
            guard let values = Elements<UInt16>(file: file, offset: offsets[0], count: counts[0]) else { return nil }
            storage = .bf16(values)
            panel = Int(clip_bf16_panel_width())
        case .int8:
            guard group == Int(clip_int8_group(code)),
                  let codes = Elements<Int8>(file: file, offset: offsets[0], count: counts[0]),
                  let scales = Elements<Float>(file: file, offset: offsets[1], count: counts[1]),
                  let sums = Elements<Int32>(file: file, offset: offsets[2], count: counts[2]) else { return nil }
            storage = .int8(codes: codes, scales: scales, sums: sums, group: group)
            panel = Int(clip_int8_panel_width(code))
        }
        self.k = k
        self.n = n
        self.kernel = kernel
        self.name = name
    }
}

extension PackedMatrix {
    /// Bump when a packing routine changes its element order without changing any figure `layoutDescription`
    /// names: cache files written before then are then never read.
    package static let layoutVersion = 1

    /// Everything the packed layouts on this machine depend on: the layout version, the CPU level and the extensions
    /// the kernels use, the k-block, and each available kernel's panel widths and int8 group. Part of every
    /// packed-weight cache key, so a file written by another build or another CPU is not read.
    package static var layoutDescription: String {
        var parts = ["layout \(layoutVersion)", "level \(CPU.level)", "features \(CPU.features.joined(separator: ","))",
                     "block-k \(clip_gemm_block_k())", "bf16-panel \(clip_bf16_panel_width())"]
        for kernel in GEMMKernel.available {
            parts.append("\(kernel.rawValue) panel \(clip_gemm_panel_width(kernel.code)) int8-panel "
                         + "\(clip_int8_panel_width(kernel.code)) int8-group \(clip_int8_group(kernel.code))")
        }
        for precision in Precision.allCases {
            parts.append("\(precision.rawValue) kernel \(precision.kernels.first?.rawValue ?? "none")")
        }
        return parts.joined(separator: "; ")
    }
}
