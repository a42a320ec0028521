import Testing
import CLIPTensor
#if canImport(Glibc)
import Glibc
import Foundation

/// Minor page faults of the calling thread (RUSAGE_THREAD = 1): other tests running meanwhile do not count.
private func threadPageFaults() -> Int {
    var usage = rusage()
    getrusage(1, &usage)
    return usage.ru_minflt
}

/// Runs `body` `count` times, each on a thread created for it, one after another, and returns the results. glibc gives a new
/// thread an arena no running thread uses: a fresh one, or one a finished thread left, perhaps half full. There a round
/// can spill into a secondary heap, which glibc deletes as soon as everything in it is free whatever the thresholds,
/// so every round faults it in again: one CI run counted 30,725 faults at 8 MiB in each of three attempts, each on a
/// new thread that took over the arena the previous attempt's thread had just left. The threads here stay alive until
/// all have measured, so each attempt runs in an arena of its own.
private final class Attempts: @unchecked Sendable {
    var values: [Int]
    let measured = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
    init(_ count: Int) { values = Array(repeating: .max, count: count) }
}

private func onThreadsOfTheirOwn(_ count: Int, _ body: @escaping @Sendable () -> Int) -> [Int] {
    let attempts = Attempts(count)
    for i in 0..<count {
        let thread = Thread {
            attempts.values[i] = body()
            attempts.measured.signal()
            attempts.release.wait()
        }
        thread.stackSize = 1 << 20
        thread.start()
        attempts.measured.wait()
    }
    for _ in 0..<count { attempts.release.signal() }
    return attempts.values
}

/// The pattern of a training step: several activations of a few MiB alive together, then all freed. With glibc's
/// defaults every round faults all its pages in afresh (30,570 faults in 5 rounds of 6 × 4 MiB, measured with the
/// call removed); with the memory retained the second and later rounds reuse it.
@Test(arguments: [1 << 20, 4 << 20, 8 << 20])
func freedActivationsAreReusedWithoutPageFaults(blockBytes: Int) {
    #expect(ProcessMemory.retainFreedMemory())
    // The best of three: tests running alongside may still take the retained memory in between; without retention
    // every attempt faults about 5 × per round.
    let faults = onThreadsOfTheirOwn(3) { () -> Int in
        func round() -> Bool {
            let blocks = (0..<6).map { i in [UInt8](repeating: UInt8(i + 1), count: blockBytes) }
            return blocks.allSatisfy { $0.count == blockBytes }
        }
        _ = round()
        let before = threadPageFaults()
        for _ in 0..<5 { _ = round() }
        return threadPageFaults() - before
    }.min() ?? .max
    let pagesPerRound = 6 * blockBytes / 4096
    // Without retention this is about 5 × pagesPerRound.
    #expect(faults < pagesPerRound, "\(faults) page faults in 5 rounds of 6 × \(blockBytes >> 20) MiB")
}
#endif
