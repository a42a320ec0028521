import ArgumentParser
import CLIPCommandSupport
import CLIPIndex
import CLIPKit
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct Search: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Search an index (`clip index`) by description or example image.",
        discussion: """
            Terms are texts or image paths joined by + and - (separate words); N: weights a term: \
            clip search "2:golden retriever" + ./pool.jpg - fruit. Words without an operator between them are one \
            text. Prints score and path per hit, best first; a video's hit is the moment that matched best, its time after \
            the path (path@1:23.4).
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var index: IndexOptions
    @OptionGroup var orientation: OrientationOption

    @Argument(parsing: .allUnrecognized, help: "The query: texts and image paths, joined by + and -.")
    var query: [String] = []

    @Option(help: "How many hits.")
    var top = 10

    @Flag(help: "A JSON array of {\"path\", \"score\", \"width\", \"height\"}, and \"time\" (seconds) for a video's moment.")
    var json = false

    @Flag(help: "Every matching moment of a video is a hit of its own (by default a video appears once, at its best moment).")
    var everyMoment = false

    @Flag(help: "Paths only, one per line (for xargs).")
    var filepathOnly = false

    @Option(help: "Also write a contact sheet of the hits (thumbnails with rank and score) to this PNG file.")
    var sheet: String?

    @Option(help: "Inline thumbnails on terminals that speak the kitty graphics protocol: auto (when standard output is such a terminal), always, never.")
    var preview: Preview = .auto

    enum Preview: String, ExpressibleByArgument, CaseIterable { case auto, always, never }

    @Flag(help: "Scan every fp32 vector. By default an index of 200,000 or more vectors is scanned in int8 for candidates that are then scored exactly (docs/search.md gives the recall).")
    var exact = false

    func validate() throws {
        // The scan keeps the best `top` in a sorted list: it is for the hits a person looks at, not the whole index.
        guard (1...10_000).contains(top) else { throw ValidationError("--top must be within 1...10000") }
        guard !(json && filepathOnly) else { throw ValidationError("--json and --filepath-only exclude each other") }
    }

    func run() throws {
        let terms = try QueryTerm.parse(query)
        guard FileManager.default.fileExists(atPath: index.path) else {
            throw CLIError.input(subject: index.path, reason: "no index here yet; build one with clip index FOLDER\(index.db.map { " --db \($0)" } ?? "")")
        }
        let photoIndex = try index.open()
        // A query of texts alone never touches the image tower: it is not even read.
        let needsImages = terms.contains { if case .image = $0.source { return true } else { return false } }
        let (clip, indexed) = try indexedModel(model, orientation: orientation.applyOrientation, index: photoIndex,
                                               registering: false, towers: needsImages ? .both : .textOnly)
        let search = try PhotoSearch(index: photoIndex, model: indexed, mode: exact ? .exact : .automatic)
        let hits = try search.search(try PhotoSearch.queryVector(terms, pipeline: clip), top: top, everyMoment: everyMoment)
        if let sheet { try write(Data(try ContactSheet.png(hits)), to: sheet) }
        if json {
            print(try jsonText(hits))
        } else if filepathOnly {
            for h in hits { print(h.path) }
        } else {
            let inline = preview == .always || (preview == .auto && Self.terminalShowsKittyGraphics())
            for h in hits {
                print(String(format: "%.4f\t%@", h.score, h.path) + (h.time.map { "@" + Self.clock($0) } ?? ""))
                if inline, let png = ContactSheet.thumbnailPNG(h.path, time: h.time) { print(Self.kittyImage(png)) }
            }
        }
    }

    /// A video time as a player shows it: `m:ss.s`, or `h:mm:ss.s` from an hour.
    static func clock(_ seconds: Double) -> String {
        // Clamped first: a hostile container's timestamps may be past any Int.
        let tenths = Int((min(max(seconds, 0), 1e12) * 10).rounded())
        let (h, m, s) = (tenths / 36_000, tenths / 600 % 60, Double(tenths % 600) / 10)
        return h > 0 ? String(format: "%d:%02d:%04.1f", h, m, s) : String(format: "%d:%04.1f", m, s)
    }

    /// Standard output is a terminal that draws kitty graphics (kitty itself, and terminals that say so in TERM).
    static func terminalShowsKittyGraphics() -> Bool {
        guard isatty(1) != 0 else { return false }
        let env = ProcessInfo.processInfo.environment
        return env["KITTY_WINDOW_ID"] != nil || env["TERM"] == "xterm-kitty" || env["TERM_PROGRAM"] == "WezTerm"
            || env["TERM_PROGRAM"] == "ghostty"
    }

    /// A PNG as kitty graphics-protocol escapes: base64 in chunks of at most 4096 bytes, `m=1` on all but the last.
    static func kittyImage(_ png: [UInt8]) -> String {
        let encoded = Array(Data(png).base64EncodedString().utf8)
        var out = ""
        var start = 0
        repeat {
            let end = min(start + 4096, encoded.count)
            let more = end < encoded.count ? 1 : 0
            let control = start == 0 ? "a=T,f=100,m=\(more)" : "m=\(more)"
            out += "\u{1B}_G\(control);" + String(decoding: encoded[start..<end], as: UTF8.self) + "\u{1B}\\"
            start = end
        } while start < encoded.count
        return out
    }
}
