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

/// Runs `body` on a thread created for it and waits. glibc gives a new thread an arena no running thread uses (up to
/// 8 per core); on a test-pool thread the arena is shared with tests running alongside, whose allocations split the
/// freed blocks, push the next round into a fresh heap and fault it in: one CI run counted 20,485 faults at 8 MiB
/// where alone it counts a few dozen.
private final class ResultBox: @unchecked Sendable {
    var value = 0
    let done = DispatchSemaphore(value: 0)
}

private func onOwnThread(_ body: @escaping @Sendable () -> Int) -> Int {
    let box = ResultBox()
    let thread = Thread { box.value = body(); box.done.signal() }
    thread.stackSize = 1 << 20
    thread.start()
    box.done.wait()
    return box.value
}

/// The pattern of a training step: several activations of a few MiB alive together, then all freed. With glibc's
/// defaults every round faults all its pages in afresh (30,570 faults in 5 rounds of 6 × 4 MiB, measured with the
/// call removed); with the memory retained the second and later rounds reuse it.
@Test(arguments: [1 << 20, 4 << 20, 8 << 20])
func freedActivationsAreReusedWithoutPageFaults(blockBytes: Int) {
    #expect(ProcessMemory.retainFreedMemory())
    // The best of three: tests running alongside share the allocator, and one of them may take the retained memory
    // in between (20,485 faults once at 8 MiB on CI); without retention every attempt faults about 5 × per round.
    let faults = (0..<3).map { _ in
        onOwnThread { () -> Int in
            func round() -> Bool {
                let blocks = (0..<6).map { i in [UInt8](repeating: UInt8(i + 1), count: blockBytes) }
                return blocks.allSatisfy { $0.count == blockBytes }
            }
            _ = round()
            let before = threadPageFaults()
            for _ in 0..<5 { _ = round() }
            return threadPageFaults() - before
        }
    }.min() ?? .max
    let pagesPerRound = 6 * blockBytes / 4096
    // Without retention this is about 5 × pagesPerRound.
    #expect(faults < pagesPerRound, "\(faults) page faults in 5 rounds of 6 × \(blockBytes >> 20) MiB")
}
#endif
