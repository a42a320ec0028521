/// An element of a `BinaryHeap`: the order it is popped in, known statically so the heap's comparisons inline.
protocol HeapElement {
    /// Whether `a` is popped before `b`.
    static func precedes(_ a: Self, _ b: Self) -> Bool
}

/// A binary heap: `pop` returns the element that precedes all others. Both BPE tokenizers keep their candidate
/// merges in one (CLIP's by merge rank, SentencePiece's by piece score); written here rather than taken from
/// swift-collections' `Heap` so the tokenizer module keeps depending on nothing.
struct BinaryHeap<Element: HeapElement> {
    private var items: [Element] = []

    init() {}

    private func precedes(_ a: Element, _ b: Element) -> Bool { Element.precedes(a, b) }

    func peek() -> Element? { items.first }

    mutating func push(_ e: Element) {
        items.append(e)
        var c = items.count - 1
        while c > 0 {
            let p = (c - 1) / 2
            guard precedes(items[c], items[p]) else { break }
            items.swapAt(c, p)
            c = p
        }
    }

    mutating func pop() -> Element? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var p = 0
        while true {
            let l = 2 * p + 1, r = l + 1
            var m = p
            if l < items.count && precedes(items[l], items[m]) { m = l }
            if r < items.count && precedes(items[r], items[m]) { m = r }
            guard m != p else { break }
            items.swapAt(p, m)
            p = m
        }
        return top
    }
}
