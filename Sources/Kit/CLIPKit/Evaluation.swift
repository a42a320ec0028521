import CLIP
import CLIPData
import CLIPImage
import CLIPTensor
import Foundation

/// The evaluations of the CLIP paper, on the user's own data: zero-shot classification of a labelled folder,
/// image↔text retrieval on a caption set, and a linear probe on frozen image features.
public enum Evaluation {
    /// A labelled image folder laid out as `class name/*.jpg` (or .png, .webp): the images (sorted) and the class
    /// index of each, with the class names (folder names, sorted).
    public static func labelledFolder(_ root: String) throws(EvaluationError) -> (files: [String], labels: [Int], classes: [String]) {
        let fm = FileManager.default
        guard let entries = try? fm.contentsOfDirectory(atPath: root) else { throw .data("\(root): cannot list the folder") }
        // Class folders and their images as every folder is walked (`FolderWalk`): hidden ones are not classes.
        let classes = entries.filter {
            var d: ObjCBool = false
            return !FolderWalk.isHidden($0) && fm.fileExists(atPath: "\(root)/\($0)", isDirectory: &d) && d.boolValue
        }.sorted()
        var files: [String] = [], labels: [Int] = []
        for (c, name) in classes.enumerated() {
            var walk = FolderWalk()
            let images = walk.images(under: "\(root)/\(name)").map(\.path)
            files += images
            labels += [Int](repeating: c, count: images.count)
        }
        guard classes.count >= 2, !files.isEmpty else {
            throw .data("\(root): needs at least two class folders with images in them (class/*.jpg); found \(classes.count) folders, \(files.count) images")
        }
        return (files, labels, classes)
    }

    /// Top-1 and top-5 accuracy (and per-class top-1) of scores [N, classes] against labels.
    public struct Accuracy: Sendable, Codable {
        public var top1: Double
        public var top5: Double
        public var count: Int
        public var perClassTop1: [String: Double]
        /// How often each true class (outer key) got each top-1 prediction (inner key): what a class is mistaken for
        /// (a tie with the true class counts for it, as in `top1`; other ties go to the first class in order).
        public var confusion: [String: [String: Int]]
    }

    /// Zero-shot accuracy of `pipeline` on `files` with `labels`, the classes named by `classes` put into `templates`.
    public static func zeroShot(_ pipeline: CLIPPipeline, files: [String], labels: [Int], classes: [String],
                                templates: [String], batchSize: Int = 64) throws(EvaluationError) -> Accuracy {
        let probabilities = try zeroShotProbabilities(pipeline, files: files, classes: classes, templates: templates, batchSize: batchSize)
        return accuracy(probabilities, labels: labels, classes: classes)
    }

    /// Zero-shot class probabilities [files.count, classes.count], row-major, of `pipeline` on `files`.
    package static func zeroShotProbabilities(_ pipeline: CLIPPipeline, files: [String], classes: [String],
                                              templates: [String], batchSize: Int = 64) throws(EvaluationError) -> [Float] {
        do {
            let classifier = try pipeline.zeroShotClassifier(labels: classes, templates: templates)
            let embeddings = try pipeline.imageEmbeddings(files: files, batchSize: batchSize)
            return try classifier.probabilities(embeddings).scalars
        } catch let e as PipelineError { throw .pipeline(e) } catch { throw .data("\(error)") }
    }

    /// One image's zero-shot result (`clip eval --predictions`): what a summary cannot show, such as which images of
    /// a class fail and what they are taken for.
    package struct Prediction: Sendable, Codable, Equatable {
        package var path: String
        /// The true class.
        package var label: String
        /// The top-1 prediction, by `accuracy`'s rule: the true class when it ties for the best.
        package var predicted: String
        package var correct: Bool
        /// The best classes, best first (ties in class order), with their scores.
        package var top: [Ranked]

        package struct Ranked: Sendable, Codable, Equatable {
            package var label: String
            package var probability: Double
        }
    }

    /// Each image's prediction from row-major scores [files.count, classes.count], with its `top` best classes.
    package static func predictions(_ scores: [Float], files: [String], labels: [Int], classes: [String], top: Int = 5) -> [Prediction] {
        let k = classes.count
        return zip(files, labels).enumerated().map { i, item in
            let row = Array(scores[(i * k)..<((i + 1) * k)])
            let predicted = topPrediction(row, label: item.1)
            let best = row.indices.sorted { row[$0] > row[$1] || (row[$0] == row[$1] && $0 < $1) }.prefix(max(0, top))
            return Prediction(path: item.0, label: classes[item.1], predicted: classes[predicted], correct: predicted == item.1,
                              top: best.map { Prediction.Ranked(label: classes[$0], probability: Double(row[$0])) })
        }
    }

    /// The top-1 prediction: the true class when it ties for the best, as top-1 counts it, else the first best.
    static func topPrediction(_ row: [Float], label: Int) -> Int {
        if !row.contains(where: { $0 > row[label] }) { return label }
        return row.indices.max { row[$0] < row[$1] || (row[$0] == row[$1] && $0 > $1) } ?? label
    }

    /// Accuracy of row-major scores [labels.count, classes.count].
    public static func accuracy(_ scores: [Float], labels: [Int], classes: [String]) -> Accuracy {
        let k = classes.count
        var top1 = 0, top5 = 0
        var perClass = [Int](repeating: 0, count: k), perClassCount = [Int](repeating: 0, count: k)
        var confusion: [String: [String: Int]] = [:]
        for (i, label) in labels.enumerated() {
            let row = Array(scores[(i * k)..<((i + 1) * k)])
            let better = row.filter { $0 > row[label] }.count  // rank of the true class (ties count for it)
            let predicted = topPrediction(row, label: label)
            confusion[classes[label], default: [:]][classes[predicted], default: 0] += 1
            if better == 0 { top1 += 1; perClass[label] += 1 }
            if better < 5 { top5 += 1 }
            perClassCount[label] += 1
        }
        let n = Double(max(labels.count, 1))
        var per: [String: Double] = [:]
        for c in 0..<k where perClassCount[c] > 0 { per[classes[c]] = Double(perClass[c]) / Double(perClassCount[c]) }
        return Accuracy(top1: Double(top1) / n, top5: Double(top5) / n, count: labels.count, perClassTop1: per, confusion: confusion)
    }

    /// Recall@1/5/10 in both directions.
    public struct Recall: Sendable, Codable {
        public var imageToText: [Int: Double]
        public var textToImage: [Int: Double]
        public var count: Int
    }

    /// Image↔text retrieval over N images and their N captions: for each image, whether its caption is among the
    /// k most similar captions, and the reverse. Captions with identical text are interchangeable (retrieving a
    /// duplicate of the right caption counts as a hit), as no model can tell them apart.
    public static func retrieval(_ pipeline: CLIPPipeline, files: [String], captions: [String],
                                 batchSize: Int = 64) throws(EvaluationError) -> Recall {
        guard files.count == captions.count, !files.isEmpty else { throw .data("retrieval needs one caption per image") }
        do {
            let img = try pipeline.imageEmbeddings(files: files, batchSize: batchSize)
            let txt = try pipeline.textEmbeddings(captions, truncate: true)
            return try recall(imageEmbeddings: img, textEmbeddings: txt, captions: captions)
        } catch let e as PipelineError { throw .pipeline(e) } catch { throw .data("\(error)") }
    }

    /// Recall from normalised embeddings [N, E] of images and of their captions.
    public static func recall(imageEmbeddings img: Tensor, textEmbeddings txt: Tensor, captions: [String]) throws(TensorError) -> Recall {
        let s = try matmul(img, txt, transposeB: true)  // [N, N] cosine similarities
        let n = captions.count
        var i2t: [Int: Double] = [:], t2i: [Int: Double] = [:]
        for k in [1, 5, 10] {
            var hitsI = 0, hitsT = 0
            for i in 0..<n {
                let row = (0..<n).map { s.scalars[i * n + $0] }
                let topText = row.indices.sorted { row[$0] > row[$1] }.prefix(k)
                if topText.contains(where: { captions[$0] == captions[i] }) { hitsI += 1 }
                let column = (0..<n).map { s.scalars[$0 * n + i] }
                let topImages = column.indices.sorted { column[$0] > column[$1] }.prefix(k)
                if topImages.contains(where: { captions[$0] == captions[i] }) { hitsT += 1 }
            }
            i2t[k] = Double(hitsI) / Double(n)
            t2i[k] = Double(hitsT) / Double(n)
        }
        return Recall(imageToText: i2t, textToImage: t2i, count: n)
    }
}

/// Why an evaluation could not run.
public enum EvaluationError: Error, CustomStringConvertible {
    case data(String)
    case pipeline(PipelineError)

    public var description: String {
        switch self {
        case .data(let m): return m
        case .pipeline(let e): return e.description
        }
    }
}
