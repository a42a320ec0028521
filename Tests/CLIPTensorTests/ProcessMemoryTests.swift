import Testing
import CLIPTensor
#if canImport(Glibc)
import Glibc

/// Minor page faults of the calling thread (RUSAGE_THREAD = 1): other tests running meanwhile do not count.
private func threadPageFaults() -> Int {
    var usage = rusage()
    getrusage(1, &usage)
    return usage.ru_minflt
}

/// The pattern of a training step: several activations of a few MiB alive together, then all freed. With glibc's
/// defaults every round faults all its pages in afresh (30,570 faults in 5 rounds of 6 × 4 MiB, measured with the
/// call removed); with the memory retained the second and later rounds reuse it.
@Test(arguments: [1 << 20, 4 << 20, 8 << 20])
func freedActivationsAreReusedWithoutPageFaults(blockBytes: Int) {
    #expect(ProcessMemory.retainFreedMemory())
    func round() {
        let blocks = (0..<6).map { i in [UInt8](repeating: UInt8(i + 1), count: blockBytes) }
        #expect(blocks.allSatisfy { $0.count == blockBytes })
    }
    round()
    let before = threadPageFaults()
    for _ in 0..<5 { round() }
    let faults = threadPageFaults() - before
    let pagesPerRound = 6 * blockBytes / 4096
    // Without retention this is about 5 × pagesPerRound; one round's worth allows for another thread taking a block.
    #expect(faults < pagesPerRound, "\(faults) page faults in 5 rounds of 6 × \(blockBytes >> 20) MiB")
}
#endif
