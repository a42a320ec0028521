import CLIPTensor

/// The vector cache's file: one model's embeddings of the live files, as the scan reads them, kept beside the
/// database (`<db>.model-<id>.vectors`).
///
/// The file is a header and segments. A full build writes one segment; each later index run that changed a few
/// files appends one segment holding their new rows and naming the rows it supersedes, and then rewrites the header
/// (generation, segment count, committed length). Bytes below the committed length are never rewritten in place,
/// so a process that mapped the file keeps reading what it mapped while another appends; a compaction writes a new
/// file and renames it over. A crash leaves the old header (bytes past the committed length are ignored and cut
/// by the next writer), or a torn header, which its checksum shows (the cache is then rebuilt).
///
/// All integers little-endian.
/// - header (64 bytes): `CLIPVEC3`, generation i64, dimension, segments, committed length, rows (u64 each), the
///   nonce the database drew for that generation (i64), checksum of bytes 0..<56.
/// - segment, at a multiple of 64: a 64-byte header (`CLIPSEG2`, rows, superseded, generation, 0, 0, 0, checksum),
///   then `rows` file ids (i64, ascending; a video's moments are consecutive rows with its id), the `superseded`
///   file ids all of whose rows in earlier segments are dead (ascending), the vectors ([rows, dimension] f32), their
///   int8 codes' scales ([rows] f32), each row's time in its video ([rows] f32 seconds; -1 for a still image) and
///   the codes ([rows, dimension] i8, row ≈ scale · codes with scale = max|x| / 127), each part starting at a
///   multiple of 64.
enum VectorCacheFormat {
    static let magic = Array("CLIPVEC3".utf8)
    static let segmentMagic = Array("CLIPSEG2".utf8)
    static let headerSize = 64

    struct Header: Equatable {
        var generation: Int64
        var dimension: Int
        var segments: Int
        var committed: Int
        var rows: Int
        var nonce: Int64
    }

    static func checksum(_ raw: UnsafeRawBufferPointer) -> UInt64 {
        checksum64(raw.baseAddress, count: raw.count, seed: 0x434C_4950_5645_4332)
    }

    /// 64 bytes: `magic`, six u64 fields (`fields` padded with zeros), the checksum of the 56 bytes before it.
    static func block(_ magic: [UInt8], _ fields: [UInt64]) -> [UInt8] {
        var out = magic
        for v in fields + [UInt64](repeating: 0, count: 6 - fields.count) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        let sum = out.withUnsafeBytes { checksum($0) }
        withUnsafeBytes(of: sum.littleEndian) { out += $0 }
        return out
    }

    /// The six u64 fields of a 64-byte block at `offset` that starts with `magic` and whose checksum holds.
    static func fields(_ raw: UnsafeRawBufferPointer, at offset: Int, magic: [UInt8]) -> [UInt64]? {
        guard offset >= 0, offset <= raw.count - 64, raw[offset..<(offset + 8)].elementsEqual(magic) else { return nil }
        let block = UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + 64)])
        guard block.u64(56) == checksum(UnsafeRawBufferPointer(rebasing: block[0..<56])) else { return nil }
        return (0..<6).map { block.u64(8 + 8 * $0) }
    }

    static func encode(_ h: Header) -> [UInt8] {
        block(magic, [UInt64(bitPattern: h.generation), UInt64(h.dimension), UInt64(h.segments), UInt64(h.committed),
                      UInt64(h.rows), UInt64(bitPattern: h.nonce)])
    }

    static func header(_ raw: UnsafeRawBufferPointer) -> Header? {
        guard let f = fields(raw, at: 0, magic: magic), let d = Checked.int(f[1]), let s = Checked.int(f[2]),
              let c = Checked.int(f[3]), let r = Checked.int(f[4]) else { return nil }
        return Header(generation: Int64(bitPattern: f[0]), dimension: d, segments: s, committed: c, rows: r,
                      nonce: Int64(bitPattern: f[5]))
    }

    /// Where a segment's parts lie, relative to its start.
    struct Plan {
        let rows: Int, superseded: Int, dimension: Int
        let ids: Int, supersededIDs: Int, vectors: Int, scales: Int, times: Int, codes: Int, length: Int

        /// Nil when the sizes overflow (a damaged or hostile header).
        init?(rows: Int, superseded: Int, dimension: Int) {
            func up(_ x: Int) -> Int? { Checked.sum(x, 63).map { $0 & ~63 } }
            guard rows >= 0, superseded >= 0, dimension > 0,
                  let idBytes = Checked.product(rows, 8), let supBytes = Checked.product(superseded, 8),
                  let codeBytes = Checked.product(rows, dimension), let vectorBytes = Checked.product(codeBytes, 4),
                  let a = Checked.sum(64, idBytes), let b = Checked.sum(a, supBytes).flatMap(up),
                  let c = Checked.sum(b, vectorBytes).flatMap(up), let t = Checked.sum(c, rows * 4).flatMap(up),
                  let e = Checked.sum(t, rows * 4).flatMap(up),
                  let end = Checked.sum(e, codeBytes).flatMap(up) else { return nil }
            (self.rows, self.superseded, self.dimension) = (rows, superseded, dimension)
            (ids, supersededIDs, vectors, scales, times, codes, length) = (64, a, b, c, t, e, end)
        }
    }

    /// One segment as read from memory that outlives it.
    struct Segment: @unchecked Sendable {
        /// The row of the whole store its first row is.
        let start: Int
        let rows: Int
        let ids: UnsafePointer<Int64>
        let superseded: UnsafeBufferPointer<Int64>
        let vectors: UnsafePointer<Float>
        let scales: UnsafePointer<Float>
        /// Seconds into the video, -1 for a still image.
        let times: UnsafePointer<Float>
        let codes: UnsafePointer<Int8>

        /// The rows (within this segment) holding file `id`, by binary search over the ascending ids: one for an
        /// image, one per moment for a video, none for a file the segment does not hold.
        func rows(of id: Int64) -> Range<Int> {
            func bound(_ strictlyBelow: (Int64) -> Bool) -> Int {
                var (lo, hi) = (0, rows)
                while lo < hi {
                    let mid = (lo + hi) / 2
                    if strictlyBelow(Int64(littleEndian: ids[mid])) { lo = mid + 1 } else { hi = mid }
                }
                return lo
            }
            return bound { $0 < id }..<bound { $0 <= id }
        }
    }

    /// The segments of the committed bytes `raw` under `header`, or nil when any part is missing, overlaps or
    /// leaves bytes unaccounted for.
    static func segments(_ raw: UnsafeRawBufferPointer, header: Header) -> [Segment]? {
        guard header.committed <= raw.count, header.segments <= header.committed / 64, let base = raw.baseAddress else { return nil }
        var out: [Segment] = []
        var offset = headerSize, start = 0
        for _ in 0..<header.segments {
            guard let f = fields(UnsafeRawBufferPointer(rebasing: raw[0..<header.committed]), at: offset, magic: segmentMagic),
                  let rows = Checked.int(f[0]), let superseded = Checked.int(f[1]),
                  let plan = Plan(rows: rows, superseded: superseded, dimension: header.dimension),
                  let end = Checked.sum(offset, plan.length), end <= header.committed,
                  let next = Checked.sum(start, rows) else { return nil }
            let p = base + offset
            out.append(Segment(
                start: start, rows: rows,
                ids: (p + plan.ids).assumingMemoryBound(to: Int64.self),
                superseded: UnsafeBufferPointer(start: (p + plan.supersededIDs).assumingMemoryBound(to: Int64.self), count: superseded),
                vectors: (p + plan.vectors).assumingMemoryBound(to: Float.self),
                scales: (p + plan.scales).assumingMemoryBound(to: Float.self),
                times: (p + plan.times).assumingMemoryBound(to: Float.self),
                codes: (p + plan.codes).assumingMemoryBound(to: Int8.self)))
            (offset, start) = (end, next)
        }
        guard offset == header.committed, start == header.rows else { return nil }
        return out
    }

    /// The int8 codes and scale of one row (scale max|x| / 127; 1 for a zero row).
    static func quantize(_ row: UnsafePointer<Float>, dimension d: Int, scale: UnsafeMutablePointer<Float>,
                         codes: UnsafeMutablePointer<Int8>) {
        var m: Float = 0
        for j in 0..<d { m = max(m, abs(row[j])) }
        let s = m > 0 ? m / 127 : 1
        scale.pointee = s
        for j in 0..<d { codes[j] = Int8(max(-127, min(127, (row[j] / s).rounded()))) }
    }
}

extension UnsafeRawBufferPointer {
    /// The little-endian UInt64 at `offset`.
    func u64(_ offset: Int) -> UInt64 { UInt64(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
}
