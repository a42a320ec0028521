import CLIPTensor

/// A value `Unpickler` builds: inert data, never code.
package indirect enum PickleValue: Sendable {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    case global(module: String, name: String)
    case object(PickleObject)
    case storage(StorageRef)
    case tensor(TensorRef)
}

extension PickleValue {
    /// Takes `values` apart without recursion: every container's children move to a work list before the container
    /// is released (and mutable containers are emptied, which also breaks reference cycles). Freeing a deep tree
    /// the ordinary way recurses once per level and can overflow the stack.
    static func dismantle(_ values: [PickleValue]) {
        var work = values
        while let value = work.popLast() {
            switch value {
            case .tuple(let items): work += items
            case .list(let l):
                work += l.items
                l.items = []
            case .dict(let d):
                for (k, v) in d.items { work += [k, v] }
                d.items = []
            case .object(let o):
                work.append(o.state)
                o.state = .none
            default: break
            }
        }
    }
}

/// Mutable containers: pickles fill lists and dicts after memoising them, so they need reference semantics.
package final class PickleList: @unchecked Sendable {
    package var items: [PickleValue] = []
}

package final class PickleDict: @unchecked Sendable {
    package var items: [(key: PickleValue, value: PickleValue)] = []
}

/// An instance of a TorchScript class (`__torch__.…`): its pickled attribute dictionary.
package final class PickleObject: @unchecked Sendable {
    package let className: String
    package var state: PickleValue = .none
    init(className: String) { self.className = className }
}
// The classes above are only mutated while one unpickler builds them; afterwards the tree is read-only.

/// A storage named by a persistent id: ('storage', <type>, key, location, element count).
package struct StorageRef: Sendable {
    package let dtype: DType
    package let key: String
    package let count: Int
}

/// A tensor view of a storage, as `torch._utils._rebuild_tensor_v2` describes it.
package struct TensorRef: Sendable {
    package let storage: StorageRef
    package let offset: Int
    package let shape: [Int]
    package let stride: [Int]
}

extension DType {
    /// The element type of a PyTorch storage class (`FloatStorage`, `HalfStorage`, …), or nil for another name.
    init?(torchStorage name: String) {
        let types: [String: DType] = [
            "FloatStorage": .float32, "HalfStorage": .float16, "BFloat16Storage": .bfloat16, "DoubleStorage": .float64,
            "LongStorage": .int64, "IntStorage": .int32, "ShortStorage": .int16, "CharStorage": .int8,
            "ByteStorage": .uint8, "BoolStorage": .bool,
        ]
        guard let type = types[name] else { return nil }
        self = type
    }
}

package struct PickleError: Error, Sendable {
    package let offset: Int
    package let message: String
}
