@testable import CLIPCommand
import CLIPTestSupport
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("clip serve (the command)")
struct ServeCommandTests {
    struct Refusal: Sendable, CustomTestStringConvertible {
        let arguments: [String]
        let status: Int32
        let message: String
        var testDescription: String { arguments.joined(separator: " ") }
    }

    static let refusals: [Refusal] = [
        .init(arguments: ["--host", "0.0.0.0"], status: 64, message: "--api-key-file FILE, or --no-auth"),
        .init(arguments: ["--port", "70000"], status: 64, message: "--port"),
        .init(arguments: ["--max-batch", "0"], status: 64, message: "at least 1"),
        .init(arguments: ["--api-key-file", "/nonexistent/keys"], status: 1, message: "cannot read the API key file"),
        .init(arguments: ["--index", "/nonexistent/index.sqlite"], status: 1, message: "no index here"),
    ]

    @Test("a model given by path is served under its file's name, not the server's path")
    func modelNameIsNotAPath() throws {
        let file = tinyModel
        #expect(ModelHubNames.display(file) == "tiny_vit")
        #expect(ModelHubNames.display("ViT-B/32") == "ViT-B/32")
        #expect(ModelHubNames.display("default") == "swift-clip-shapes")
        #expect(ModelHubNames.display("hf-hub:org/name") == "hf-hub:org/name")
    }

    @Test("settings that would be unsafe or cannot work are refused before serving", arguments: refusals)
    func refused(_ refusal: Refusal) throws {
        let r = try runClip(["serve", "--port", "0"] + refusal.arguments)
        #expect(r.status == refusal.status, "\(r.stderr)")
        #expect(r.stderr.contains(refusal.message), "\(r.stderr)")
    }

    @Test("an empty key file is refused rather than locking everyone out")
    func emptyKeys() throws {
        let dir = try scratchDirectory("serve-keys")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "# no keys yet\n\n".write(toFile: "\(dir)/keys", atomically: true, encoding: .utf8)
        let r = try runClip(["serve", "--port", "0", "--api-key-file", "\(dir)/keys"])
        #expect(r.status == 1 && r.stderr.contains("no API keys"), "\(r.stderr)")
    }

    /// Keys saved with Windows line ends, or given through a pipe, are keys; a key file that never ends is not.
    @Test("API keys from a CRLF file and from a pipe; /dev/zero refused by its size")
    @MainActor func keyFiles() throws {
        let dir = try scratchDirectory("serve-keys-crlf")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "# keys\r\nalpha-key\r\nbeta-key\r\n".write(toFile: "\(dir)/keys", atomically: true, encoding: .utf8)
        #expect(try Serve.keys("\(dir)/keys") == ["alpha-key", "beta-key"])
        mkfifo("\(dir)/pipe", 0o600)
        let writer = Thread {
            let fd = open("\(dir)/pipe", O_WRONLY)
            _ = "gamma-key\n".withCString { write(fd, $0, 10) }
            close(fd)
        }
        writer.start()
        #expect(try Serve.keys("\(dir)/pipe") == ["gamma-key"])
        #expect { try Serve.keys("/dev/zero") } throws: { "\($0)".contains("more than 1048576 bytes") }
    }

    @Test("with CLIP_EXIT_WITH_PARENT=1 (set for every clip the tests start), clip serve stops once its parent is gone")
    func stopsWithItsParent() throws {
        // A shell starts the server in the background, prints its pid and exits two seconds later, orphaning it.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "\"$0\" serve --port 0 --log-level warning >/dev/null 2>&1 & echo $!; sleep 2", clipBinary.path]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let pid = try #require(pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), "\(text)")
        defer { kill(pid, SIGKILL) }
        // Gone, or a zombie no one reaps (a container's init may not): either way it has stopped.
        func stopped() -> Bool {
            guard kill(pid, 0) == 0 else { return true }
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            return stat.split(separator: ")").last?.split(separator: " ").first == "Z"
        }
        let deadline = Date().addingTimeInterval(20)
        while !stopped() && Date() < deadline { usleep(100_000) }
        #expect(stopped(), "clip serve (pid \(pid)) still runs after its parent exited")
    }

    @Test("serves on the port it prints, and exits 0 on SIGTERM")
    func servesAndStops() async throws {
        let p = Process()
        p.executableURL = clipBinary
        p.arguments = ["serve", "--port", "0", "--log-level", "warning"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { p.terminate() } }
        // The first line says where it listens.
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = out.fileHandleForReading.availableData
            guard !chunk.isEmpty else { break }
            line += chunk
        }
        let text = String(decoding: line, as: UTF8.self)
        let url = try #require(text.components(separatedBy: "listening on ").last?.trimmingCharacters(in: .whitespacesAndNewlines),
                               "\(text)")
        let (data, response) = try await URLSession.shared.data(from: try #require(URL(string: url + "/healthz")))
        #expect((response as? HTTPURLResponse)?.statusCode == 200)
        let health = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(health["model"] as? String == "swift-clip-shapes" && health["dimension"] as? Int == 64)
        p.terminate()  // SIGTERM
        p.waitUntilExit()
        #expect(p.terminationStatus == 0 && p.terminationReason == .exit)
    }
}
