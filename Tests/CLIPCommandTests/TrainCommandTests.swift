import CLIPKit
import CLIPTestSupport
import Foundation
import Testing

/// `clip train` end to end with the tiny architecture (seconds per step in a debug build).
private func trainArguments(_ output: String, steps: Int = 8, data: String = "synthetic") -> [String] {
    ["train", "--data", data, "--architecture", "tiny", "--steps", "\(steps)", "--batch-size", "4",
     "--output", output, "--checkpoint-every", "1", "--log-every", "1"]
}

/// Starts `clip` with `arguments`, sends `signal` once its standard error has reported `afterStep` steps, waits.
private func runAndSignal(_ arguments: [String], signal: Int32, afterStep: Int) throws -> (status: Int32, stderr: String) {
    let p = Process()
    p.executableURL = clipBinary
    p.arguments = arguments
    let err = Pipe()
    p.standardError = err
    p.standardOutput = FileHandle.nullDevice
    try p.run()
    var seen = ""
    let handle = err.fileHandleForReading
    while p.isRunning {
        let chunk = handle.availableData
        if chunk.isEmpty { break }
        seen += String(decoding: chunk, as: UTF8.self)
        if seen.contains("step \(afterStep) ") { kill(p.processIdentifier, signal); break }
    }
    seen += String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    return (p.terminationStatus, seen)
}

@Test("a run killed (kill -9) or interrupted (Ctrl-C) at a random step and resumed ends with bitwise the weights of an uninterrupted run",
      arguments: [SIGKILL, SIGINT])
func killedAndResumedRunEqualsUninterruptedRun(signal: Int32) throws {
    let dir = try scratchDirectory("resume")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let whole = try runClip(trainArguments("\(dir)/whole.safetensors"))
    #expect(whole.status == 0, "\(whole.stderr)")
    let stopAt = Int.random(in: 2...6)
    let killed = try runAndSignal(trainArguments("\(dir)/resumed.safetensors"), signal: signal, afterStep: stopAt)
    #expect(killed.status != 0, "the run was to be stopped at step \(stopAt): \(killed.stderr)")
    if signal == SIGINT { #expect(killed.stderr.contains("interrupted"), "\(killed.stderr)") }
    let resumed = try runClip(trainArguments("\(dir)/resumed.safetensors") + ["--resume"])
    #expect(resumed.status == 0, "\(resumed.stderr)")
    #expect(resumed.stderr.contains("resuming at step"), "\(resumed.stderr)")
    let a = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/whole.safetensors"))
    let b = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/resumed.safetensors"))
    #expect(a == b, "weights differ after stopping at step \(stopAt) with signal \(signal)")
    let csvA = try String(contentsOfFile: "\(dir)/whole.loss.csv", encoding: .utf8)
    let csvB = try String(contentsOfFile: "\(dir)/resumed.loss.csv", encoding: .utf8)
    #expect(csvA == csvB && csvA.split(separator: "\n").count == 9)
    #expect(FileManager.default.fileExists(atPath: "\(dir)/whole.loss.png"))
    let info = try runClip(["info", "\(dir)/whole.safetensors"])
    #expect(info.status == 0, "the trained weights load: \(info.stderr)")
}

@Test("the data formats people have: a folder with .txt captions, open_clip's CSV and TSV, webdataset tar shards; bad examples skipped and counted",
      arguments: ["folder", "csv", "tsv", "tar"])
func trainsOnEveryDataFormat(format: String) throws {
    let dir = try scratchDirectory(format)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let made = try runClip(["synthetic", "--count", "10", "--size", "20", "--output", "\(dir)/images"])
    #expect(made.status == 0, "\(made.stderr)")
    // One damaged image and one image without a caption.
    try Data("not an image".utf8).write(to: URL(fileURLWithPath: "\(dir)/images/00000003.png"))
    try FileManager.default.removeItem(atPath: "\(dir)/images/00000005.txt")
    let data: String
    switch format {
    case "folder":
        data = "\(dir)/images"
    case "csv", "tsv":
        let sep = format == "csv" ? "," : "\t"
        var table = "filepath\(sep)title\n"
        for i in 0..<10 where i != 5 {
            let caption = try String(contentsOfFile: "\(dir)/images/0000000\(i).txt", encoding: .utf8).trimmingCharacters(in: .newlines)
            table += "images/0000000\(i).png\(sep)\"\(caption), \"\"quoted\"\"\"\n"
        }
        data = "\(dir)/captions.\(format)"
        try table.write(toFile: data, atomically: true, encoding: .utf8)
    default:
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        tar.currentDirectoryURL = URL(fileURLWithPath: "\(dir)/images")
        tar.arguments = ["tar", "cf", "\(dir)/shard-00000.tar"] + (try FileManager.default.contentsOfDirectory(atPath: "\(dir)/images")).sorted()
        try tar.run()
        tar.waitUntilExit()
        try #require(tar.terminationStatus == 0)
        data = "\(dir)/shard-00000.tar"
    }
    let r = try runClip(trainArguments("\(dir)/model.safetensors", steps: 3, data: data))
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stderr.contains("skipped"), "the damaged image is reported: \(r.stderr)")
    #expect(r.stderr.contains("00000003.png"), "\(r.stderr)")
}

@Test("bad settings are refused with the setting named", arguments: [
    (["--batch-size", "1"], "batch size"),
    (["--learning-rate", "-1"], "learning rate"),
    (["--architecture", "huge"], "architecture"),
    (["--precision", "int8"], "precision"),
    (["--data", "/nonexistent/folder"], "/nonexistent/folder"),
])
func badSettingsAreRefused(extra: [String], mentions: String) throws {
    let dir = try scratchDirectory("bad")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let r = try runClip(trainArguments("\(dir)/m.safetensors", steps: 2) + extra)
    #expect(r.status != 0)
    #expect(r.stderr.contains(mentions), "\(r.stderr)")
}

@Test("--precision bf16 trains with bf16 products where the CPU has AVX512-BF16, is refused with the reason where not, and a run cannot resume in another precision")
func bf16Training() throws {
    let dir = try scratchDirectory("bf16")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let arguments = trainArguments("\(dir)/m.safetensors", steps: 3) + ["--precision", "bf16"]
    let r = try runClip(arguments)
    guard Precision.bf16.isAvailable else {
        #expect(r.status != 0 && r.stderr.contains("AVX512-BF16"), "\(r.stderr)")
        return
    }
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stderr.contains("products in bf16"), "\(r.stderr)")
    let info = try runClip(["info", "\(dir)/m.safetensors"])
    #expect(info.status == 0, "the trained weights load: \(info.stderr)")
    // The same run continued with fp32 products would not be the run it started as.
    let other = try runClip(trainArguments("\(dir)/m.safetensors", steps: 5) + ["--resume"])
    #expect(other.status != 0 && other.stderr.contains("other settings"), "\(other.stderr)")
    let same = try runClip(trainArguments("\(dir)/m.safetensors", steps: 5) + ["--precision", "bf16", "--resume"])
    #expect(same.status == 0 && same.stderr.contains("resuming at step 3"), "\(same.stderr)")
}

@Test("precision fp32 given explicitly is the run that omits it: such a run resumes either way")
func explicitFP32IsTheDefaultRun() throws {
    let dir = try scratchDirectory("fp32")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let r = try runClip(trainArguments("\(dir)/m.safetensors", steps: 2))
    #expect(r.status == 0, "\(r.stderr)")
    let resumed = try runClip(trainArguments("\(dir)/m.safetensors", steps: 3) + ["--precision", "fp32", "--resume"])
    #expect(resumed.status == 0 && resumed.stderr.contains("resuming at step 2"), "\(resumed.stderr)")
}

@Test("a config file sets what flags set; an unknown key is named")
func configFileSettings() throws {
    let dir = try scratchDirectory("config")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try #"{"data": "synthetic", "architecture": "tiny", "steps": 2, "batch-size": 4, "learning-rate": 0.0005}"#
        .write(toFile: "\(dir)/c.json", atomically: true, encoding: .utf8)
    let ok = try runClip(["train", "--config", "\(dir)/c.json", "--output", "\(dir)/m.safetensors"])
    #expect(ok.status == 0, "\(ok.stderr)")
    #expect(ok.stderr.contains("lr 5.00e-04"), "\(ok.stderr)")
    try #"{"data": "synthetic", "architecture": "tiny", "steps": 2, "batch-size": 4, "precision": "fp32"}"#
        .write(toFile: "\(dir)/p.json", atomically: true, encoding: .utf8)
    let fp32 = try runClip(["train", "--config", "\(dir)/p.json", "--output", "\(dir)/p.safetensors"])
    #expect(fp32.status == 0 && !fp32.stderr.contains("products in bf16"), "\(fp32.stderr)")
    try #"{"data": "synthetic", "architecture": "tiny", "steps": 2, "batch-size": 4, "precision": "fp16"}"#
        .write(toFile: "\(dir)/q.json", atomically: true, encoding: .utf8)
    let fp16 = try runClip(["train", "--config", "\(dir)/q.json", "--output", "\(dir)/q.safetensors"])
    #expect(fp16.status != 0 && fp16.stderr.contains("precision must be fp32 or bf16"), "\(fp16.stderr)")
    try #"{"data": "synthetic", "stepz": 2}"#.write(toFile: "\(dir)/bad.json", atomically: true, encoding: .utf8)
    let bad = try runClip(["train", "--config", "\(dir)/bad.json", "--output", "\(dir)/m.safetensors"])
    #expect(bad.status != 0 && bad.stderr.contains("stepz"), "\(bad.stderr)")
}
