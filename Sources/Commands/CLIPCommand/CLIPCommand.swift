import ArgumentParser
import CLIPBench
import CLIPCommandSupport
import CLIPTensor
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct CLIPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clip",
        abstract: "CLIP image and text embeddings, natively.",
        subcommands: [Classify.self, Embed.self, Similarity.self, Tokenize.self, Preprocess.self, Info.self, Models.self, Convert.self, Train.self, Eval.self, LinearProbeCommand.self, Synthetic.self, Index.self, Search.self, Serve.self, Cache.self, Bench.self]
    )

    /// Refuses arguments that are not UTF-8 before parsing: Swift's strings would replace their bytes, and a file
    /// name so changed would be reported as missing rather than as what it is.
    static func main() async {
        for i in 1..<Int(CommandLine.argc) {
            guard let raw = CommandLine.unsafeArgv[i], String(validatingCString: raw) == nil else { continue }
            let bytes = UnsafeBufferPointer(start: raw, count: strlen(raw)).map { UInt8(bitPattern: $0) }
            let shown = bytes.map { $0 < 0x80 && $0 >= 0x20 ? String(UnicodeScalar($0)) : String(format: "\\x%02x", $0) }
            FileHandle.standardError.write(Data("clip: argument \(i) ('\(shown.joined())') is not valid UTF-8; clip needs UTF-8 file names and texts\n".utf8))
            Self.exit(withError: ExitCode(1))
        }
        ProcessMemory.retainFreedMemory()
        if ProcessInfo.processInfo.environment["CLIP_EXIT_WITH_PARENT"] == "1" { exitWithParent() }
        // Parsing (and each command's `validate()`) fails as ArgumentParser reports it, with the usage; what a
        // command's run throws is reported by `runReportingErrors` as one line.
        let command: any ParsableCommand
        do { command = try parseAsRoot() } catch { exit(withError: error) }
        do { try await runReportingErrors(command) } catch { exit(withError: error) }
    }

    /// With `CLIP_EXIT_WITH_PARENT=1` (the test suites set it), the process sends itself SIGTERM once its parent is
    /// gone (it is re-parented), so a test run that crashes leaves no `clip serve` behind. Polled once a second:
    /// Linux's PR_SET_PDEATHSIG fires when the spawning *thread* exits, which a thread pool's idle thread may do
    /// while the parent lives on.
    private static func exitWithParent() {
        let parent = getppid()
        let watcher = Thread {
            while getppid() == parent { sleep(1) }
            kill(getpid(), SIGTERM)
        }
        watcher.start()
    }
}
