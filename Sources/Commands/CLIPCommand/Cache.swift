import ArgumentParser
import CLIP
import CLIPCommandSupport
import Foundation

struct Cache: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List or clear the packed-weight cache that makes later loads of a checkpoint fast.",
        discussion: """
            The first load of a checkpoint file writes its weights as the kernels use them (packed, in the precision \
            asked for) under $CLIP_WEIGHT_CACHE, else $XDG_CACHE_HOME/swift-clip/packed, else \
            ~/.cache/swift-clip/packed; later loads map that file instead of decoding and packing. Files are keyed by \
            the checkpoint's content, the precision and this CPU's kernels; the least recently used are removed beyond \
            $CLIP_WEIGHT_CACHE_LIMIT GiB (default 8). CLIP_WEIGHT_CACHE=off turns the cache off.
            """,
        subcommands: [List.self, Clear.self])

    static func userCache() throws -> PackedWeightCache {
        guard let cache = PackedWeightCache.user else {
            throw CLIError.unavailable("the packed-weight cache is off (CLIP_WEIGHT_CACHE=off, or no HOME to put it under)")
        }
        return cache
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One line per cache file: size, precision, last use, checkpoint.")

        func run() throws {
            let cache = try Cache.userCache()
            let entries = cache.entries()
            let formatter = ISO8601DateFormatter()
            // The header's strings are the file's: printed escaped, so a crafted one cannot drive the terminal.
            func shown(_ text: String) -> String {
                text.unicodeScalars.map { $0.properties.generalCategory == .control ? $0.escaped(asASCII: true) : String($0) }.joined()
            }
            for e in entries {
                let mib = String(format: "%8.1f MiB", Double(e.bytes) / 1_048_576)
                print("\(mib)  \(e.precision.isEmpty ? "?" : shown(e.precision))  \(formatter.string(from: e.lastUsed))  \(e.source.isEmpty ? "(unreadable: rebuilt on next use)" : shown(e.source))")
            }
            let total = entries.reduce(0) { $0 + $1.bytes }
            print(String(format: "%d file%@, %.1f MiB of %.1f GiB in %@", entries.count, entries.count == 1 ? "" : "s",
                         Double(total) / 1_048_576, Double(cache.sizeLimit) / 1_073_741_824, cache.directory))
        }
    }

    struct Clear: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove every cache file (the next load of each checkpoint writes it again).")

        func run() throws {
            let cache = try Cache.userCache()
            let freed = try cache.clear()
            print(String(format: "freed %.1f MiB in %@", Double(freed) / 1_048_576, cache.directory))
        }
    }
}
