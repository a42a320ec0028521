/// For each query of an attention pass, the rows of a [rows, width] activation it attends to, in order (a
/// compressed sparse row list: query i's keys are `rows[offsets[i]..<offsets[i + 1]]`).
package struct KeyRows: Sendable, Equatable {
    /// [queries + 1], non-decreasing from 0.
    package private(set) var offsets: [Int] = [0]
    /// Row indices, every query's keys one after the other.
    package private(set) var rows: [Int] = []

    /// No query yet.
    package init() {}

    /// Queries listed.
    package var count: Int { offsets.count - 1 }

    /// The most keys any query has.
    package var longest: Int { zip(offsets.dropFirst(), offsets).map { $0 - $1 }.max() ?? 0 }

    /// Appends a query seeing `keys`.
    package mutating func append<S: Sequence<Int>>(_ keys: S) {
        rows.append(contentsOf: keys)
        offsets.append(rows.count)
    }

    /// The keys of every query of `batch` sequences of `tokens` rows each, stored one sequence after the other,
    /// where sequence b asks at token `queries[b]`: tokens 0...queries[b] with `causal`, else all, less those marked
    /// false in `keyMask` [batch·tokens].
    package init(batch: Int, tokens: Int, causal: Bool, keyMask: [Bool]?, queries: [Int]) {
        for b in 0..<batch {
            let visible = causal ? queries[b] + 1 : tokens
            append((0..<visible).lazy.filter { keyMask?[b * tokens + $0] ?? true }.map { b * tokens + $0 })
        }
    }

    /// Whether every listed row is in 0..<`rows` (so the attention that reads them stays inside its buffer).
    package func isWithin(rows limit: Int) -> Bool { rows.allSatisfy { $0 >= 0 && $0 < limit } }
}

/// The distinct prefixes of a batch of token sequences, one node each. Under a causal mask a token's features after
/// every block depend only on the tokens up to it, so sequences that begin alike — every prompt of a template
/// ("a photo of a …"), or the same text twice — share those tokens' rows: a causal tower runs once per node instead
/// of once per token of every sequence, and gets the same numbers.
package struct PrefixTree: Sendable {
    /// [nodes]: the token id of each node; a node's parent always precedes it.
    package private(set) var tokens: [Int] = []
    /// [nodes]: each node's position in its sequences.
    package private(set) var positions: [Int] = []
    /// [nodes]: each node's parent, -1 for a first token.
    package private(set) var parents: [Int] = []
    /// [sequences]: the node of each sequence's last token.
    package private(set) var ends: [Int] = []

    /// The tree of `sequences[s][0..<lengths[s]]` (a length past its sequence's end stops there; a missing length
    /// is 0, and the sequence's end is then -1).
    package init(_ sequences: [[Int]], lengths: [Int]) {
        struct Edge: Hashable { var parent: Int, token: Int }
        var children: [Edge: Int] = [:]
        for (s, sequence) in sequences.enumerated() {
            var parent = -1
            for i in 0..<min(s < lengths.count ? max(lengths[s], 0) : 0, sequence.count) {
                let key = Edge(parent: parent, token: sequence[i])
                if let node = children[key] {
                    parent = node
                } else {
                    children[key] = tokens.count
                    tokens.append(sequence[i])
                    positions.append(i)
                    parents.append(parent)
                    parent = tokens.count - 1
                }
            }
            ends.append(parent)
        }
    }

    /// Nodes: the rows a causal tower computes.
    package var count: Int { tokens.count }

    /// The rows each of `nodes` attends to under the causal mask: its ancestors, root first, then itself. Built
    /// when a tower runs the tree (a tree that is not used costs only its nodes).
    package func keys(of nodes: [Int]) -> KeyRows {
        var listed = KeyRows(), path: [Int] = []
        for n in nodes {
            path.removeAll(keepingCapacity: true)
            var u = n
            while u >= 0 { path.append(u); u = parents[u] }
            listed.append(path.reversed())
        }
        return listed
    }
}
