import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Bench {
    func median(_ body: () throws -> Void) throws -> Double {
        try body()
        var times: [Double] = []
        for _ in 0..<`repeat` {
            let start = monotonicSeconds()
            try body()
            times.append(monotonicSeconds() - start)
        }
        return times.sorted()[times.count / 2]
    }
}

/// Peak resident memory of this process in MiB. On Linux from VmHWM, which starts afresh at exec
/// (getrusage's ru_maxrss carries over the parent's peak into a child process).
func peakResidentMiB() -> Double {
    #if os(Linux)
    if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
       let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
       let kib = Double(line.split(separator: " ").dropFirst().first ?? "") {
        return kib / 1024
    }
    #endif
    var usage = rusage()
    #if os(Linux)
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
    #else
    getrusage(RUSAGE_SELF, &usage)
    return Double(usage.ru_maxrss) / 1024 / 1024
    #endif
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}


/// A sum that parallel tasks add to.
final class ParallelSum: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0.0
    func add(_ x: Double) { lock.lock(); value += x; lock.unlock() }
    var total: Double { lock.lock(); defer { lock.unlock() }; return value }
}
