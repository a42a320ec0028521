import CLIPKit
import Testing

@Test("top-1 and top-5 count the true class's rank; ties count for it; per-class accuracy")
func accuracyCountsRanks() {
    let classes = ["a", "b", "c", "d", "e", "f"]
    let scores: [Float] = [
        0.9, 0.1, 0, 0, 0, 0,   // label 0: top-1
        0.9, 0.8, 0, 0, 0, 0,   // label 1: rank 2
        0.9, 0.9, 0.5, 0.6, 0.7, 0.8,  // label 5 (0.8): rank 3 → top-5
        0.5, 0.5, 0, 0, 0, 0,   // label 1 tied with the best: counts as top-1
        1, 0.9, 0.8, 0.7, 0.6, 0.5,  // label 5: rank 6 → neither
    ]
    let a = Evaluation.accuracy(scores, labels: [0, 1, 5, 1, 5], classes: classes)
    #expect(a.top1 == 2.0 / 5 && a.top5 == 4.0 / 5 && a.count == 5)
    #expect(a.perClassTop1 == ["a": 1, "b": 0.5, "f": 0])
    // Row 2 is mistaken for a; row 3's ties (a and b at 0.9) go to the first; row 4's tie with the truth counts for it.
    #expect(a.confusion == ["a": ["a": 1], "b": ["a": 1, "b": 1], "f": ["a": 2]])
}

@Test("per-image predictions agree with the confusion counts; top classes best first, ties in class order",
      arguments: [0, 2, 5, 9])
func predictionsFollowTheAccuracyRules(top: Int) throws {
    let classes = ["a", "b", "c", "d", "e", "f"]
    let scores: [Float] = [
        0.9, 0.1, 0, 0, 0, 0,
        0.9, 0.8, 0, 0, 0, 0,
        0.9, 0.9, 0.5, 0.6, 0.7, 0.8,
        0.5, 0.5, 0, 0, 0, 0,
        1, 0.9, 0.8, 0.7, 0.6, 0.5,
    ]
    let labels = [0, 1, 5, 1, 5], files = ["p0", "p1", "p2", "p3", "p4"]
    let rows = Evaluation.predictions(scores, files: files, labels: labels, classes: classes, top: top)
    let accuracy = Evaluation.accuracy(scores, labels: labels, classes: classes)
    #expect(rows.map(\.path) == files && rows.map(\.label) == ["a", "b", "f", "b", "f"])
    #expect(rows.map(\.predicted) == ["a", "a", "a", "b", "a"] && rows.map(\.correct) == [true, false, false, true, false])
    var counted: [String: [String: Int]] = [:]
    for r in rows { counted[r.label, default: [:]][r.predicted, default: 0] += 1 }
    #expect(counted == accuracy.confusion)
    #expect(Double(rows.filter(\.correct).count) / Double(rows.count) == accuracy.top1)
    #expect(rows.allSatisfy { $0.top.count == min(top, classes.count) })
    if top >= 2 {
        #expect(rows[2].top.prefix(2).map(\.label) == ["a", "b"] && rows[2].top[0].probability == Double(Float(0.9)))
        // Row 3 ties a and b at the top; b is the true class and the prediction, but the ranking keeps class order.
        #expect(rows[3].top.prefix(2).map(\.label) == ["a", "b"])
    }
}

@Test("recall@k in both directions; duplicate captions are interchangeable")
func recallCountsDuplicatesAsHits() throws {
    // Three images and captions; image 2 matches caption 1 best, whose text equals caption 2's.
    let img = try Tensor(shape: [3, 2], scalars: [1, 0, 0, 1, 0.6, 0.8])
    let txt = try Tensor(shape: [3, 2], scalars: [1, 0, 0.6, 0.8, 0, 1])
    let r = try Evaluation.recall(imageEmbeddings: img, textEmbeddings: txt, captions: ["x", "y", "y"])
    #expect(r.imageToText[1] == 1)  // image 1 → caption 2 ("y") or 1 ("y"), image 2 → caption 1 ("y")
    #expect(r.textToImage[1] == 1)
    let distinct = try Evaluation.recall(imageEmbeddings: img, textEmbeddings: txt, captions: ["x", "y", "z"])
    #expect(distinct.imageToText[1] == 1.0 / 3 && distinct.imageToText[5] == 1)
}

@Test("a linear probe separates separable classes")
func linearProbeSeparates() {
    var x: [Float] = [], labels: [Int] = []
    var rng = SplitMix64(state: 3)
    for i in 0..<90 {
        let c = i % 3
        x += [Float(c == 0 ? 1 : 0) + 0.2 * rng.nextSigned(), Float(c == 1 ? 1 : 0) + 0.2 * rng.nextSigned(),
              0.2 * rng.nextSigned()]
        labels.append(c)
    }
    let probe = LinearProbe(features: x, labels: labels, classes: 3, iterations: 300)
    let acc = Evaluation.accuracy(probe.scores(x), labels: labels, classes: ["0", "1", "2"])
    #expect(acc.top1 >= 0.95)
}
