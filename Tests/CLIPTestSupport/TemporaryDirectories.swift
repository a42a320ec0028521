import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `/tmp/<prefix><pid>`: where this test process writes caches that must not land in the user's own. Swift Testing
/// has no hook after the last test, so the first use removes the directories of test processes that ended more than
/// a day ago instead (a day as well: /tmp may be shared with test runs in other PID namespaces, whose processes look
/// ended here).
package func perProcessTemporaryDirectory(prefix: String) -> String {
    let tmp = FileManager.default.temporaryDirectory.path
    for name in (try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? [] where name.hasPrefix(prefix) {
        let path = tmp + "/" + name
        let age = (try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date)
            .map { -$0.timeIntervalSinceNow } ?? 0
        if let pid = Int32(name.dropFirst(prefix.count)), kill(pid, 0) != 0, errno == ESRCH, age > 86_400 {
            try? FileManager.default.removeItem(atPath: path)
        }
    }
    return tmp + "/" + prefix + "\(getpid())"
}
