/// The longest caption read (training tables and `.txt` files, webdataset members, evaluation and embedding
/// folders), in UTF-8 bytes: CLIP reads 77 tokens (a few hundred characters), and cleaning and tokenizing cost about a
/// microsecond a byte, so a 40 MB caption took 28 s and 3 GiB before this bound.
package let maximumCaptionBytes = 64 << 10

/// Why a table (open_clip's CSV/TSV of image paths and captions) could not be read; names the file and line.
package enum TableError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A field at `line` longer than the limit.
    case fieldTooLong(table: String, line: Int, limit: Int)
    /// A quote opened and never closed.
    case unclosedQuote(table: String)
    /// The header lacks the columns asked for.
    case missingColumns(table: String, header: [String], wanted: [String], hint: String)
    /// A row with too few fields for the columns read.
    case shortRow(table: String, line: Int, fields: Int, headerFields: Int)

    package var description: String {
        switch self {
        case .fieldTooLong(let table, let line, let limit):
            return "\(table): line \(line): a field is longer than \(limit) bytes; captions are read to the model's context (77 tokens), so cut it"
        case .unclosedQuote(let table): return "\(table): a quoted field is not closed before the end of the file"
        case .missingColumns(let table, let header, let wanted, let hint):
            return "\(table): the header \(header) has no \(wanted.map { "'\($0)'" }.joined(separator: " and ")) columns (\(hint))"
        case .shortRow(let table, let line, let fields, let headerFields):
            return "\(table): line \(line) has \(fields) fields, the header \(headerFields)"
        }
    }
}

/// RFC 4180 fields: separators, quotes ("" inside quotes), CRLF or LF line ends. A field longer than
/// `maxFieldBytes` is an error naming its line, found before the field is kept.
package enum DelimitedTable {
    /// Every row, blank lines left out.
    package static func parse(_ bytes: [UInt8], separator: UInt8, name: String,
                              maxFieldBytes: Int = .max) throws(TableError) -> [[String]] {
        var rows: [[String]] = []
        try forEachRow(bytes, separator: separator, name: name, maxFieldBytes: maxFieldBytes) { (row, _) in rows.append(row) }
        return rows
    }

    /// Hands each row to `body` with its first line's number, without keeping them: a table of millions of rows
    /// (or of 50 million blank lines) costs only what `body` keeps.
    package static func forEachRow(_ bytes: [UInt8], separator: UInt8, name: String, maxFieldBytes: Int = .max,
                                   _ body: ([String], Int) throws(TableError) -> Void) throws(TableError) {
        var row: [String] = [], field: [UInt8] = []
        var quoted = false, i = 0, line = 1, rowLine = 1
        func endRow() throws(TableError) {
            row.append(String(decoding: field, as: UTF8.self))
            field = []
            if !(row.count == 1 && row[0].isEmpty) { try body(row, rowLine) }
            row = []
        }
        // `line` counts physical lines (LF, CRLF or a lone CR, inside quotes too) for messages.
        while i < bytes.count {
            let b = bytes[i]
            if quoted {
                if b == 34 {
                    if i + 1 < bytes.count && bytes[i + 1] == 34 { field.append(34); i += 1 } else { quoted = false }
                } else {
                    field.append(b)
                    if b == 10 || (b == 13 && !(i + 1 < bytes.count && bytes[i + 1] == 10)) { line += 1 }
                }
            } else if b == 34 && field.isEmpty {
                quoted = true
            } else if b == separator {
                row.append(String(decoding: field, as: UTF8.self)); field = []
            } else if b == 10 || b == 13 {
                if b == 13 && i + 1 < bytes.count && bytes[i + 1] == 10 { i += 1 }
                try endRow()
                line += 1
                rowLine = line
            } else { field.append(b) }
            if field.count > maxFieldBytes {
                throw TableError.fieldTooLong(table: name, line: line, limit: maxFieldBytes)
            }
            i += 1
        }
        if quoted { throw TableError.unclosedQuote(table: name) }
        if !field.isEmpty || !row.isEmpty { try endRow() }
    }
}
