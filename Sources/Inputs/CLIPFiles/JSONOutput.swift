import Foundation

/// The one way swift-clip writes JSON (command output, server responses, JSON-lines metadata, records beside
/// outputs): keys sorted, so the same value gives the same bytes from run to run, and slashes unescaped, so paths
/// and URLs read as they are. Compact unless a file is meant to be read by people.
package enum JSONOutput {
    /// `value` as compact JSON.
    package static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        [UInt8](try encoder(pretty: false).encode(value))
    }

    /// `value` as compact JSON text.
    package static func text<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try encode(value), as: UTF8.self)
    }

    /// `value` indented, one key per line: for small records people open.
    package static func pretty<T: Encodable>(_ value: T) throws -> [UInt8] {
        [UInt8](try encoder(pretty: true).encode(value))
    }

    /// `values` as JSON Lines: one compact object per line, each ended by a newline.
    package static func lines<T: Encodable>(_ values: some Sequence<T>) throws -> [UInt8] {
        let encoder = encoder(pretty: false)
        var out: [UInt8] = []
        for value in values {
            out += try encoder.encode(value)
            out.append(UInt8(ascii: "\n"))
        }
        return out
    }

    private static func encoder(pretty: Bool) -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}
