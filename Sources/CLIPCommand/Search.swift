import ArgumentParser
import CLIPCommandSupport
import CLIPIndex
import CLIPKit
import Foundation

struct Search: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Search an index (`clip index`) by description or example image.",
        discussion: """
            Terms are texts or image paths joined by + and - (separate words); N: weights a term: \
            clip search "2:golden retriever" + ./pool.jpg - fruit. Words without an operator between them are one \
            text. Prints score and path per hit, best first.
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var index: IndexOptions

    @Argument(parsing: .allUnrecognized, help: "The query: texts and image paths, joined by + and -.")
    var query: [String] = []

    @Option(help: "How many hits.")
    var top = 10

    @Flag(help: "A JSON array of {\"path\", \"score\", \"width\", \"height\"}.")
    var json = false

    @Flag(help: "Paths only, one per line (for xargs).")
    var filepathOnly = false

    @Flag(help: "Scan every fp32 vector. By default an index of 200,000 or more vectors is scanned in int8 for candidates that are then scored exactly (docs/search.md gives the recall).")
    var exact = false

    func validate() throws {
        guard top >= 1 else { throw ValidationError("--top must be at least 1") }
        guard !(json && filepathOnly) else { throw ValidationError("--json and --filepath-only exclude each other") }
    }

    func run() throws {
        try reportingErrors {
            let terms = try QueryTerm.parse(query)
            guard FileManager.default.fileExists(atPath: index.path) else {
                throw CLIError("\(index.path): no index here yet; build one with clip index FOLDER\(index.db.map { " --db \($0)" } ?? "")")
            }
            let photoIndex = try index.open()
            // A query of texts alone never touches the image tower: it is not even read.
            let needsImages = terms.contains { if case .image = $0.source { return true } else { return false } }
            let (clip, indexed) = try indexedModel(model, index: photoIndex, registering: false,
                                                   towers: needsImages ? .both : .textOnly)
            let search = try PhotoSearch(index: photoIndex, model: indexed, mode: exact ? .exact : .automatic)
            let hits = try search.search(try PhotoSearch.queryVector(terms, pipeline: clip), top: top)
            if json {
                print(try jsonText(hits))
            } else if filepathOnly {
                for h in hits { print(h.path) }
            } else {
                for h in hits { print(String(format: "%.4f\t%@", h.score, h.path)) }
            }
        }
    }
}
