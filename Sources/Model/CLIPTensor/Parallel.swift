import CCLIPKernels
import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How many worker threads data-parallel loops use: the CPUs this process may run on, or
/// `CLIP_NUM_THREADS` when set to a positive number.
@usableFromInline package let availableCores: Int = {
    if let s = getenvString("CLIP_NUM_THREADS"), let n = Int(s), n > 0 { return n }
    return Int(clip_available_cpus())
}()

func getenvString(_ name: String) -> String? {
    guard let p = getenv(name) else { return nil }
    return String(cString: p)
}

/// Runs `body(i)` for `i` in `0..<count`, spread over the available cores.
///
/// `body` is not `@Sendable` because layer code hands it raw pointers into buffers it owns; the contract is
/// that iterations write disjoint memory and only read memory no iteration writes.
@inlinable
package func parallelFor(_ count: Int, _ body: (Int) -> Void) {
    if count <= 1 || availableCores == 1 {
        for i in 0..<count { body(i) }
        return
    }
    withoutActuallyEscaping(body) { body in
        nonisolated(unsafe) let work = body
        DispatchQueue.concurrentPerform(iterations: count) { i in work(i) }
    }
}

/// Splits `0..<total` into at most `parts` contiguous chunks whose bounds are multiples of `granule`
/// (except the end), and returns the chunk boundaries.
@inlinable
package func chunkBounds(total: Int, parts: Int, granule: Int) -> [Int] {
    let units = (total + granule - 1) / granule
    let p = max(1, min(parts, units))
    var bounds = [0]
    for i in 1...p {
        bounds.append(min(total, (units * i / p) * granule))
    }
    return bounds
}

/// Work started on another thread now and collected later: the next batch is decoded while the model encodes
/// the current one. `wait()` blocks until the value is ready and may be called more than once.
package final class BackgroundWork<Value: Sendable>: @unchecked Sendable {
    // Written once by the worker before `done` is signalled; read only after waiting on it.
    private var value: Value?
    private let done = DispatchSemaphore(value: 0)

    package init(_ work: @escaping @Sendable () -> Value) {
        DispatchQueue.global().async {
            self.value = work()
            self.done.signal()
        }
    }

    package func wait() -> Value {
        done.wait()
        done.signal()
        return value!
    }
}
