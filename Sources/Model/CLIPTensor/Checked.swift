/// Sizes, offsets and counts that come from a file, a config or an argument are combined only through these: each
/// returns nil instead of trapping when a value is negative or the result does not fit an `Int`, so a hostile input
/// turns into an error message at the caller, never a crash.
package enum Checked {
    /// a · b, or nil on overflow or a negative operand.
    @inlinable
    package static func product(_ a: Int, _ b: Int) -> Int? {
        guard a >= 0, b >= 0 else { return nil }
        let (p, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? nil : p
    }

    /// The product of all `values` (1 for none), or nil on overflow or a negative value.
    @inlinable
    package static func product<S: Sequence>(_ values: S) -> Int? where S.Element == Int {
        var p = 1
        for v in values {
            guard let q = product(p, v) else { return nil }
            p = q
        }
        return p
    }

    /// a + b, or nil on overflow or a negative operand.
    @inlinable
    package static func sum(_ a: Int, _ b: Int) -> Int? {
        guard a >= 0, b >= 0 else { return nil }
        let (s, overflow) = a.addingReportingOverflow(b)
        return overflow ? nil : s
    }

    /// An unsigned value from a file as an `Int`, or nil when it does not fit.
    @inlinable
    package static func int(_ v: UInt64) -> Int? { v <= UInt64(Int.max) ? Int(v) : nil }

    /// An integer read from JSON (`NSNumber`, `Double` or `Int`) as an `Int` in `range`, or nil: NaN, fractions,
    /// values outside the range (or outside `Int`) are all refused.
    @inlinable
    package static func int(_ v: Double, in range: ClosedRange<Int>) -> Int? {
        guard v.isFinite, v.rounded() == v, v >= Double(range.lowerBound), v <= Double(range.upperBound) else {
            return nil
        }
        return Int(v)
    }

    /// Whether [offset, offset + count) lies within [0, size).
    @inlinable
    package static func range(offset: Int, count: Int, within size: Int) -> Bool {
        guard offset >= 0, count >= 0, offset <= size else { return false }
        return count <= size - offset
    }
}
