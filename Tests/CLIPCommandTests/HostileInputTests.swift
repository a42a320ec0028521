import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The hostile inputs of `Scripts/fuzz/make_hostile_cases.py` against a built `clip`: every case must end with its
/// exit code (1: one stderr line naming the file and the problem) within its time and peak-memory bounds. Gated: the
/// cases take a minute to generate and some are hundreds of megabytes.
///
///     python3 Scripts/fuzz/make_hostile_cases.py /tmp/hostile
///     swift build -c release --product clip
///     CLIP_HOSTILE_CASES=/tmp/hostile CLIP_BINARY=.build/release/clip swift test --filter HostileInput
let hostileCaseDirectory = ProcessInfo.processInfo.environment["CLIP_HOSTILE_CASES"]

struct HostileCase: Decodable, CustomTestStringConvertible, Sendable {
    let name: String
    let args: [String]
    let exit: Int32
    let stderr: String
    let seconds: Double
    let rss_mib: Double
    /// Files that must be byte for byte the same after the run (a database that is not an index).
    let unchanged: [String]?
    /// The exit codes allowed when more than one is right (a mutated database may still be readable).
    let exits: [Int32]?
    var testDescription: String { name }

    /// Arguments as raw bytes: "b64:…" carries one that is not valid UTF-8.
    var rawArguments: [[UInt8]] {
        args.map { a in
            if a.hasPrefix("b64:"), let d = Data(base64Encoded: String(a.dropFirst(4))) { return Array(d) }
            return Array(a.utf8)
        }
    }
}

let hostileCases: [HostileCase] = {
    guard let dir = hostileCaseDirectory,
          let data = FileManager.default.contents(atPath: dir + "/manifest.json"),
          let manifest = try? JSONDecoder().decode([String: [HostileCase]].self, from: data) else { return [] }
    return manifest["cases"] ?? []
}()

struct BoundedRun {
    let status: Int32
    let signal: Int32
    let stderr: String
    let seconds: Double
    let peakMiB: Double
}

/// Runs `binary` with raw argument bytes, stdin from /dev/null, stdout discarded, and kills it after `limit`
/// seconds; reports its exit status or signal, standard error, wall time and peak resident memory.
func runBounded(_ binary: String, _ arguments: [[UInt8]], limit: Double) throws -> BoundedRun {
    var argv: [UnsafeMutablePointer<CChar>?] = ([Array(binary.utf8)] + arguments).map { bytes in
        let p = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
        for (i, b) in bytes.enumerated() { p[i] = CChar(bitPattern: b) }
        p[bytes.count] = 0
        return p
    }
    argv.append(nil)
    defer { for p in argv { p?.deallocate() } }
    var errPipe: [Int32] = [0, 0]
    guard pipe(&errPipe) == 0 else { throw POSIXError(.EIO) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
    posix_spawn_file_actions_addclose(&actions, errPipe[0])
    var pid: pid_t = 0
    let start = Date()
    let rc = posix_spawn(&pid, binary, &actions, nil, argv, environ)
    close(errPipe[1])
    guard rc == 0 else { close(errPipe[0]); throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
    // Standard error is drained on another thread so a chatty child cannot block on a full pipe.
    let reader = errPipe[0]
    nonisolated(unsafe) var collected: [UInt8] = []
    let done = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(reader, &buffer, buffer.count)
            if n <= 0 { break }
            collected += buffer[0..<n]
        }
        close(reader)
        done.signal()
    }
    var status: Int32 = 0
    var usage = rusage()
    while true {
        let r = wait4(pid, &status, WNOHANG, &usage)
        if r == pid { break }
        if Date().timeIntervalSince(start) > limit {
            kill(pid, SIGKILL)
            _ = wait4(pid, &status, 0, &usage)
            break
        }
        usleep(10_000)
    }
    let seconds = Date().timeIntervalSince(start)
    done.wait()
    let exited = status & 0x7f == 0
    return BoundedRun(status: exited ? (status >> 8) & 0xff : -1, signal: exited ? 0 : status & 0x7f,
                      stderr: String(decoding: collected, as: UTF8.self), seconds: seconds,
                      peakMiB: Double(usage.ru_maxrss) / 1024)
}

/// Serialized: each case's time bound is for the machine to itself (the image cases use every core).
@Test("Hostile input: one clean error within time and memory bounds",
      .enabled(if: !hostileCases.isEmpty, "set CLIP_HOSTILE_CASES to a directory made by Scripts/fuzz/make_hostile_cases.py"),
      .serialized, arguments: hostileCases)
func hostileInputIsRefusedCleanly(_ c: HostileCase) throws {
    let built = clipBinary.path  // also gives the children this test process's weight cache
    let binary = ProcessInfo.processInfo.environment["CLIP_BINARY"] ?? built
    let before = (c.unchanged ?? []).map { FileManager.default.contents(atPath: $0) }
    let r = try runBounded(binary, c.rawArguments, limit: max(c.seconds * 3, 15))
    for (file, bytes) in zip(c.unchanged ?? [], before) {
        #expect(bytes != nil && FileManager.default.contents(atPath: file) == bytes, "\(c.name): \(file) was changed")
    }
    #expect(r.signal == 0, "\(c.name): killed by signal \(r.signal) after \(r.seconds) s; stderr: \(r.stderr)")
    let allowed = c.exits ?? [c.exit]
    #expect(allowed.contains(r.status), "\(c.name): exit code \(r.status), expected \(allowed); stderr: \(r.stderr)")
    #expect(r.seconds <= c.seconds, "\(c.name): took \(r.seconds) s, limit \(c.seconds) s")
    #expect(r.peakMiB <= c.rss_mib, "\(c.name): peak RSS \(r.peakMiB) MiB, limit \(c.rss_mib) MiB")
    if r.status == 1 && allowed.contains(1) {
        let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: true)
        #expect(lines.count == 1, "\(c.name): \(lines.count) stderr lines: \(r.stderr)")
        #expect(r.stderr.hasPrefix("clip: ") && r.stderr.contains(c.stderr),
                "\(c.name): stderr does not name '\(c.stderr)': \(r.stderr)")
    }
}
