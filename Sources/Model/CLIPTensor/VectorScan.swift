import CCLIPKernels

/// Row-by-query products over stored vectors (a search index's scan), with the CPU's best kernels: what code above
/// the tensor layer calls instead of the C kernels.
package enum VectorScan {
    /// `out[i] = rows[i, :] · query` for `count` rows of `dimension` floats.
    package static func dot(rows: UnsafePointer<Float>, count: Int, dimension: Int, query: UnsafePointer<Float>,
                            into out: UnsafeMutablePointer<Float>) {
        clip_dot_rows(rows, count, dimension, query, out)
    }

    /// `out[i] = scales[i] · (codes[i, :] · query)` for `count` int8 rows of `dimension` codes.
    package static func dot(codes: UnsafePointer<Int8>, scales: UnsafePointer<Float>, count: Int, dimension: Int,
                            query: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        clip_dot_rows_i8(codes, scales, count, dimension, query, out)
    }
}

/// A fast 64-bit checksum of `count` bytes at `bytes` (not cryptographic: it catches damage, not forgery), for the
/// cache files that check what they map.
package func checksum64(_ bytes: UnsafeRawPointer?, count: Int, seed: UInt64) -> UInt64 {
    clip_checksum64(bytes, count, seed)
}
