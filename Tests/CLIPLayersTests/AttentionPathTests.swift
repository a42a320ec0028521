import Testing
import CLIPLayers
import CLIPTensor

/// Values in [−1, 1] from a fixed seed (a 64-bit LCG), so the layers' inputs and weights are the same on every run.
struct SeededValues {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: state >> 11) % 2001 - 1000) / 1000
    }
}

/// Every attention kernel this CPU has computes the same layer as the portable one, with odd sizes (head dim 32,
/// 13 causal tokens, 50 tokens) and a bias that is not zero.
@Test("Attention layer: every kernel equals the portable one",
      arguments: GEMMKernel.available.filter { $0 != .portable }, [(50, false), (13, true), (1, true)])
func attentionKernelsAgreeInTheLayer(kernel: GEMMKernel, shape: (tokens: Int, causal: Bool)) throws {
    let (tokens, causal) = shape
    let (width, heads, batch) = (96, 3, 2)
    var values = SeededValues(seed: 99)
    func next() -> Float { values.next() }
    let reader = ParameterReader(origin: "test") { _, shape in
        Tensor(uncheckedShape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in next() * 0.3 })
    }
    let attention = try MultiheadSelfAttention(reader, "attn", width: width, heads: heads)
    let x = try Tensor(shape: [batch, tokens, width], scalars: (0..<batch * tokens * width).map { _ in next() })
    var outputs: [[Float]] = []
    for k in [kernel, .portable] {
        var out = try Tensor(zeros: [batch, tokens, width])
        var ws = MultiheadSelfAttention.Workspace(batch: batch, tokens: tokens, width: width)
        try attention.forward(x, causal: causal, into: &out, workspace: &ws, kernel: k)
        outputs.append(out.scalars)
    }
    var err: Float = 0, norm: Float = 0
    for (a, b) in zip(outputs[0], outputs[1]) { err += (a - b) * (a - b); norm += b * b }
    let relative = (err / norm).squareRoot()
    #expect(relative <= 1e-6, "relative error \(relative)")
}

/// A key mask (CoCa's padding) with every key visible computes what the fused kernels compute; with keys hidden,
/// each query's output equals attention over the visible keys alone, whatever the hidden tokens hold.
@Test("Attention with a key mask: all visible equals no mask; hidden keys have no influence",
      arguments: [(tokens: 13, causal: true), (tokens: 9, causal: false), (tokens: 1, causal: true)])
func attentionKeyMask(tokens: Int, causal: Bool) throws {
    let (width, heads, batch) = (48, 3, 2)
    var values = SeededValues(seed: 7)
    func next() -> Float { values.next() }
    let reader = ParameterReader(origin: "test") { _, shape in
        Tensor(uncheckedShape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in next() * 0.3 })
    }
    let attention = try MultiheadSelfAttention(reader, "attn", width: width, heads: heads)
    var x = try Tensor(shape: [batch, tokens, width], scalars: (0..<batch * tokens * width).map { _ in next() })
    func run(_ x: Tensor, _ mask: [Bool]?) throws -> [Float] {
        var out = try Tensor(zeros: x.shape)
        var ws = MultiheadSelfAttention.Workspace(batch: x.shape[0], tokens: x.shape[1], width: width)
        try attention.forward(x, causal: causal, keyMask: mask, into: &out, workspace: &ws)
        return out.scalars
    }
    func relative(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Float {
        var err: Float = 0, norm: Float = 0
        for (p, q) in zip(a, b) { err += (p - q) * (p - q); norm += q * q }
        return norm == 0 ? err.squareRoot() : (err / norm).squareRoot()
    }
    let plain = try run(x, nil)
    let allVisible = try run(x, [Bool](repeating: true, count: batch * tokens))
    #expect(relative(allVisible[...], plain[...]) <= 1e-6)
    // Hide every third key of the second sequence (never key 0): changing those tokens' values must not change
    // any output of the rows that stay, and the first sequence is untouched.
    var mask = [Bool](repeating: true, count: batch * tokens)
    for j in stride(from: 2, to: tokens, by: 3) { mask[tokens + j] = false }
    let masked = try run(x, mask)
    for j in stride(from: 2, to: tokens, by: 3) {
        for c in 0..<width { x.scalars[(tokens + j) * width + c] = next() * 5 }
    }
    let changed = try run(x, mask)
    for i in 0..<tokens where mask[tokens + i] {
        let row = (tokens + i) * width..<(tokens + i + 1) * width
        #expect(relative(changed[row], masked[row]) <= 1e-6, "query \(i) saw a hidden key")
    }
    #expect(relative(masked[..<(tokens * width)], plain[..<(tokens * width)]) <= 1e-6)
    do {
        _ = try run(x, [true])
        Issue.record("a mask of the wrong length was accepted")
    } catch {}
}

/// Convolution geometries around the implicit im2col's fast path (channels a multiple of 16) and off it (3 and 24
/// channels), strided and padded, one image and several (images across cores or each GEMM over all cores).
@Test("Implicit im2col equals the explicit im2col buffer", arguments: [
    (images: 1, size: 14, channels: 32, out: 64, kernel: 3, stride: 1, padding: 1),
    (images: 3, size: 9, channels: 16, out: 40, kernel: 3, stride: 2, padding: 1),
    (images: 2, size: 11, channels: 3, out: 32, kernel: 3, stride: 2, padding: 1),
    (images: 2, size: 7, channels: 24, out: 33, kernel: 3, stride: 1, padding: 0),
    (images: 1, size: 8, channels: 48, out: 16, kernel: 5, stride: 1, padding: 2),
])
func implicitIm2colEqualsExplicit(images: Int, size: Int, channels: Int, out: Int, kernel: Int, stride: Int,
                                  padding: Int) throws {
    var values = SeededValues(seed: UInt64(size * 1000 + channels))
    func next() -> Float { values.next() }
    let weight = Tensor(uncheckedShape: [out, channels, kernel, kernel],
                        scalars: (0..<(out * channels * kernel * kernel)).map { _ in next() })
    let bias = Tensor(uncheckedShape: [out], scalars: (0..<out).map { _ in next() })
    let conv = try Conv2d(weight: weight, bias: bias, stride: stride, padding: padding)
    let x = Tensor(uncheckedShape: [images, size, size, channels],
                   scalars: (0..<(images * size * size * channels)).map { _ in next() })
    for relu in [false, true] {
        let implicit = try conv.apply(x, relu: relu, explicitIm2col: false)
        let explicit = try conv.apply(x, relu: relu, explicitIm2col: true)
        #expect(implicit.shape == explicit.shape)
        let differing = zip(implicit.scalars, explicit.scalars).filter { $0.0.bitPattern != $0.1.bitPattern }.count
        #expect(differing == 0, "relu=\(relu): \(differing) of \(explicit.count) differ")
        // The layer keeps im2col for channel counts off the 16-wide fast path; the GEMM's own implicit packing
        // (the scalar path there) must still give the same numbers.
        let (ho, wo) = (explicit.shape[1], explicit.shape[2])
        var direct = [Float](repeating: .nan, count: explicit.count)
        let ok = x.scalars.withUnsafeBufferPointer { xp in
            bias.scalars.withUnsafeBufferPointer { bp in
                direct.withUnsafeMutableBufferPointer { dp in
                    (0..<images).allSatisfy { img in
                        conv.packedWeight.convolve(
                            image: xp.baseAddress! + img * size * size * channels, height: size, width: size,
                            channels: channels, kernel: kernel, stride: stride, padding: padding, outHeight: ho,
                            outWidth: wo, into: dp.baseAddress! + img * ho * wo * out, bias: bp.baseAddress!,
                            activation: relu ? .relu : .none)
                    }
                }
            }
        }
        #expect(ok)
        let differingDirect = zip(direct, explicit.scalars).filter { $0.0.bitPattern != $0.1.bitPattern }.count
        #expect(differingDirect == 0, "PackedMatrix.convolve, relu=\(relu): \(differingDirect) differ")
    }
}

/// A stack whose last block computes only the token each sequence's pooling reads gives, at that token, what the whole
/// stack gives (fp32 rounding apart: the one-query attention sums in its own order), with a causal mask, a key mask,
/// rotary positions and queries at the first, middle and last positions.
@Test("Transformer keeping one token per sequence equals the whole stack at that token",
      arguments: [(tokens: 10, causal: false, masked: false, rotary: true), (tokens: 13, causal: true, masked: false, rotary: false),
                  (tokens: 9, causal: true, masked: true, rotary: false), (tokens: 7, causal: false, masked: true, rotary: false),
                  (tokens: 1, causal: true, masked: false, rotary: false)])
func transformerKeepingRows(tokens: Int, causal: Bool, masked: Bool, rotary: Bool) throws {
    let (width, heads, batch) = (48, 3, 3)
    var values = SeededValues(seed: 31)
    func next() -> Float { values.next() }
    let reader = ParameterReader(origin: "test") { _, shape in
        Tensor(uncheckedShape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in next() * 0.3 })
    }
    let turns = rotary ? RotaryEmbedding(grid: 3, headDim: width / heads, referenceGrid: 3, prefixTokens: 1) : nil
    let transformer = try Transformer(reader, "t", width: width, layers: 2, heads: heads, activation: .quickGELU,
                                      eps: 1e-5, rotary: turns)
    let x = try Tensor(shape: [batch, tokens, width], scalars: (0..<batch * tokens * width).map { _ in next() })
    let rows = [0, tokens / 2, tokens - 1]
    var mask: [Bool]?
    if masked {
        var m = [Bool](repeating: true, count: batch * tokens)
        for b in 0..<batch { for j in stride(from: 1 + b, to: tokens, by: 3) { m[b * tokens + j] = false } }
        // Queries that see no key at all: the first token of a causal sequence whose key 0 is hidden, every token of
        // a sequence whose keys are all hidden.
        m[0] = false
        if !causal { for j in 0..<tokens { m[2 * tokens + j] = false } }
        mask = m
    }
    var whole = x
    try transformer.forward(&whole, causal: causal, keyMask: mask)
    var kept = x
    try transformer.forward(&kept, causal: causal, keyMask: mask, keeping: rows)
    #expect(kept.shape == [batch, 1, width])
    for (b, r) in rows.enumerated() {
        let expected = whole.scalars[((b * tokens + r) * width)..<((b * tokens + r + 1) * width)]
        let got = kept.scalars[(b * width)..<((b + 1) * width)]
        var err: Float = 0, norm: Float = 0
        for (p, q) in zip(got, expected) { err += (p - q) * (p - q); norm += q * q }
        let relative = (err / max(norm, .leastNormalMagnitude)).squareRoot()
        #expect(relative <= 1e-5, "sequence \(b), token \(r): relative error \(relative)")
    }
    var outOfRange = x
    #expect(throws: TensorError.self) { try transformer.forward(&outOfRange, causal: causal, keeping: [0, tokens, 0]) }
    #expect(throws: TensorError.self) { try transformer.forward(&outOfRange, causal: causal, keeping: [0]) }
}

/// A causal stack run once per node of a prefix tree gives each sequence's last token what the whole padded batch
/// gives it: sequences sharing a template's first tokens, a repeated sequence, a one-token sequence, lengths that
/// differ, and a head dimension (20) that is not a multiple of the attention's eight lanes.
@Test("Transformer over a prefix tree equals the whole causal stack at each sequence's end",
      arguments: [(width: 60, heads: 3), (width: 48, heads: 2)])
func transformerOverPrefixTree(width: Int, heads: Int) throws {
    let sequences = [[5, 1, 2, 3, 9], [5, 1, 2, 4], [5, 1, 2, 3, 9], [5, 7], [5], [6, 1, 2, 3, 9, 9, 8], [5, 1, 2, 3, 8]]
    let tree = PrefixTree(sequences, lengths: sequences.map(\.count))
    // 5 1 2 3 9, then 4, 7 and 8 on its path, then 6 1 2 3 9 9 8: the repeated sequence and [5] add nothing.
    #expect(tree.count == 5 + 3 + 7)
    #expect(tree.ends[0] == tree.ends[2] && tree.ends[4] == 0)
    let keys = tree.keys(of: Array(0..<tree.count))
    #expect(keys.count == tree.count && keys.longest == 7)
    #expect(Array(keys.rows[keys.offsets[tree.ends[1]]..<keys.offsets[tree.ends[1] + 1]]) == [0, 1, 2, 5])
    var values = SeededValues(seed: 43)
    func next() -> Float { values.next() }
    let reader = ParameterReader(origin: "test") { _, shape in
        Tensor(uncheckedShape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in next() * 0.3 })
    }
    let transformer = try Transformer(reader, "t", width: width, layers: 3, heads: heads, activation: .gelu, eps: 1e-5)
    let (vocab, length) = (10, sequences.map(\.count).max()!)
    let table = (0..<(vocab + length) * width).map { _ in next() }
    func input(token: Int, position: Int) -> [Float] {
        (0..<width).map { table[token * width + $0] + table[(vocab + position) * width + $0] }
    }
    // The whole batch, padded with token 0 (which the causal mask keeps from every end).
    var padded: [Float] = []
    for s in sequences {
        for i in 0..<length { padded += input(token: i < s.count ? s[i] : 0, position: i) }
    }
    var whole = try Tensor(shape: [sequences.count, length, width], scalars: padded)
    try transformer.forward(&whole, causal: true)
    let nodes = try Tensor(shape: [tree.count, width],
                           scalars: (0..<tree.count).flatMap { input(token: tree.tokens[$0], position: tree.positions[$0]) })
    let ends = try transformer.forward(nodes, tree: tree)
    #expect(ends.shape == [sequences.count, width])
    for (b, s) in sequences.enumerated() {
        let start = (b * length + s.count - 1) * width
        let expected = whole.scalars[start..<(start + width)], got = ends.scalars[(b * width)..<((b + 1) * width)]
        var err: Float = 0, norm: Float = 0
        for (p, q) in zip(got, expected) { err += (p - q) * (p - q); norm += q * q }
        let relative = (err / norm).squareRoot()
        #expect(relative <= 1e-5, "sequence \(b): relative error \(relative)")
    }
    #expect(throws: TensorError.self) { try transformer.forward(Tensor(zeros: [tree.count + 1, width]), tree: tree) }
}
