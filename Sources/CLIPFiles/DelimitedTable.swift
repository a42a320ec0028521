/// Why a table (open_clip's CSV/TSV of image paths and captions) could not be read; names the file and line.
package struct TableError: Error, CustomStringConvertible, Sendable {
    package let description: String
    package init(_ description: String) { self.description = description }
}

/// RFC 4180 fields: separators, quotes ("" inside quotes), CRLF or LF line ends. A field longer than
/// `maxFieldBytes` is an error naming its line, found before the field is kept.
package enum DelimitedTable {
    package static func parse(_ bytes: [UInt8], separator: UInt8, name: String,
                              maxFieldBytes: Int = .max) throws(TableError) -> [[String]] {
        var rows: [[String]] = [], row: [String] = [], field: [UInt8] = []
        var quoted = false, i = 0, line = 1
        while i < bytes.count {
            let b = bytes[i]
            if b == 10 { line += 1 }
            if field.count > maxFieldBytes {
                throw TableError("\(name): line \(line): a field is longer than \(maxFieldBytes) bytes; captions are read to the model's context (77 tokens), so cut it")
            }
            if quoted {
                if b == 34 {
                    if i + 1 < bytes.count && bytes[i + 1] == 34 { field.append(34); i += 1 } else { quoted = false }
                } else { field.append(b) }
            } else if b == 34 && field.isEmpty {
                quoted = true
            } else if b == separator {
                row.append(String(decoding: field, as: UTF8.self)); field = []
            } else if b == 10 || b == 13 {
                if b == 13 && i + 1 < bytes.count && bytes[i + 1] == 10 { i += 1 }
                row.append(String(decoding: field, as: UTF8.self)); field = []
                rows.append(row); row = []
            } else { field.append(b) }
            i += 1
        }
        if quoted { throw TableError("\(name): a quoted field is not closed before the end of the file") }
        if !field.isEmpty || !row.isEmpty { row.append(String(decoding: field, as: UTF8.self)); rows.append(row) }
        return rows
    }
}
