import ArgumentParser
import CLIPFiles
import CLIPCommandSupport
import CLIPData
import CLIPImage
import CLIPKit
import Foundation

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a model: zero-shot top-1/top-5 on a labelled folder, image↔text recall@1/5/10 on captions.",
        discussion: """
            --images FOLDER is laid out as `class name/*.jpg`; each folder name is put into --template. --captions \
            FOLDER holds images with same-named .txt captions; captions with identical text count as the same caption. \
            Results are printed as JSON.
            """)

    struct Output: Encodable {
        var zeroShot: Evaluation.Accuracy?
        var retrieval: RecallOutput?
    }
    struct RecallOutput: Encodable {
        var imageToText: [String: Double]
        var textToImage: [String: Double]
        var count: Int
    }

    @OptionGroup var model: ModelOptions
    @Option(help: "A labelled folder: class name/*.jpg.") var images: String?
    @Option(help: "A folder of images with same-named .txt captions.") var captions: String?
    @Option(help: "Prompt template(s) for zero-shot, {} for the class name, \(PromptTemplates.ensembleNamesPhrase(quote: "'")).") var template: [String] = []
    @Option(help: "Images per batch.") var batchSize = 64
    @Option(help: """
        With --images, also write each image's zero-shot result to this file as JSON lines: path, label (the true \
        class), predicted, correct, and top (the five best classes with their probabilities).
        """) var predictions: String?

    func validate() throws {
        guard images != nil || captions != nil else { throw ValidationError("give --images FOLDER and/or --captions FOLDER") }
        guard predictions == nil || images != nil else { throw ValidationError("--predictions needs --images FOLDER") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
    }

    func run() throws {
        let clip = try model.pipeline()
        var out = Output()
        if let images {
            let (files, labels, classes) = try Evaluation.labelledFolder(images)
            let templates = PromptTemplates.expand(template)
            let probabilities = try Evaluation.zeroShotProbabilities(clip, files: files, classes: classes, templates: templates,
                                                                     batchSize: batchSize)
            out.zeroShot = Evaluation.accuracy(probabilities, labels: labels, classes: classes)
            if let predictions {
                let rows = Evaluation.predictions(probabilities, files: files, labels: labels, classes: classes)
                try write(Data(try rows.map { try jsonText($0) + "\n" }.joined().utf8), to: predictions)
            }
        }
        if let captions {
            let (files, texts) = try captionedFolder(captions)
            let r = try Evaluation.retrieval(clip, files: files, captions: texts, batchSize: batchSize)
            out.retrieval = RecallOutput(imageToText: Dictionary(uniqueKeysWithValues: r.imageToText.map { ("R@\($0.key)", $0.value) }),
                                         textToImage: Dictionary(uniqueKeysWithValues: r.textToImage.map { ("R@\($0.key)", $0.value) }),
                                         count: r.count)
        }
        print(try jsonText(out))
    }
}

/// Images with same-named .txt captions in a folder (`FolderWalk`'s and `Captions`' rules), sorted.
func captionedFolder(_ root: String) throws -> ([String], [String]) {
    var walk = FolderWalk()
    let images = walk.images(under: root)
    if images.isEmpty, let (path, reason) = walk.unreadable.first { throw CLIError.file(path: path, reason: "cannot list the folder (\(reason))") }
    var files: [String] = [], texts: [String] = []
    for image in images {
        guard let caption = try Captions.read(forImage: image.path).get() else { continue }
        files.append(image.path)
        texts.append(caption)
    }
    guard files.count >= 2 else { throw CLIError.input(subject: root, reason: "needs at least two images with .txt captions") }
    return (files, texts)
}

struct LinearProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "linear-probe",
        abstract: "Logistic regression on frozen image features (the paper's linear probe): train on one labelled folder, report top-1 on another.")

    @OptionGroup var model: ModelOptions
    @Option(help: "Training images: class name/*.jpg.") var train: String
    @Option(help: "Test images with the same class folders.") var test: String
    @Option(help: "L2 penalty on the weights, within 0...1e6.") var lambda: Float = 1e-4
    @Option(help: "Optimisation iterations, within 1...100000.") var iterations = 500

    func validate() throws {
        // NaN or infinity made every score equal and reported a perfect 1.0.
        guard lambda.isFinite, (0...1e6).contains(lambda) else { throw ValidationError("--lambda must be a number within 0...1e6") }
        guard (1...100_000).contains(iterations) else { throw ValidationError("--iterations must be within 1...100000") }
    }

    func run() throws {
        let clip = try model.pipeline()
        let (trainFiles, trainLabels, classes) = try Evaluation.labelledFolder(train)
        let (testFiles, testLabelsRaw, testClasses) = try Evaluation.labelledFolder(test)
        let map = testClasses.map { classes.firstIndex(of: $0) }
        guard map.allSatisfy({ $0 != nil }) else {
            throw CLIError.input(subject: test, reason: "class folders \(testClasses.filter { !classes.contains($0) }) are not among the training classes")
        }
        let testLabels = testLabelsRaw.map { map[$0]! }
        let xTrain = try clip.imageEmbeddings(files: trainFiles, batchSize: 64).scalars
        let xTest = try clip.imageEmbeddings(files: testFiles, batchSize: 64).scalars
        let probe = LinearProbe(features: xTrain, labels: trainLabels, classes: classes.count, lambda: lambda, iterations: iterations)
        let acc = Evaluation.accuracy(probe.scores(xTest), labels: testLabels, classes: classes)
        print(try jsonText(acc))
    }
}
