#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SIGINT (Ctrl-C) and SIGTERM as a request to stop at the next safe point, for long jobs (training, indexing)
/// that must finish their current step and save before they exit.
package enum StopSignal {
    nonisolated(unsafe) private static var flag: sig_atomic_t = 0

    /// Whether a stop was requested since `install()`.
    package static var requested: Bool { flag != 0 }

    /// Catches SIGINT and SIGTERM from now on (clearing an earlier request).
    package static func install() {
        flag = 0
        // A parent may have started us with these signals blocked (the mask is inherited); Ctrl-C must still stop
        // the job cleanly.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, SIGINT)
        sigaddset(&unblock, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        signal(SIGINT) { _ in StopSignal.flag = 1 }
        signal(SIGTERM) { _ in StopSignal.flag = 1 }
    }
}
