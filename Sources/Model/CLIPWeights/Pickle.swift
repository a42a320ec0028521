import CLIPTensor

/// A restricted pickle reader for PyTorch checkpoints. It builds an inert value tree and never executes
/// anything: the only callables it gives meaning to are those PyTorch's `weights_only` loader admits for
/// state dicts (OrderedDict, tensor and parameter rebuilding, storage types), and TorchScript's `__torch__.*`
/// classes become plain objects whose attributes are read. Every other global, every unknown opcode, and every
/// out-of-range memo or stack access is an error that names it.
package struct Unpickler {
    private let data: [UInt8]
    private var pos = 0
    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [Int: PickleValue] = [:]
    private var opcodes = 0

    /// Deepest nesting a loaded value may have (a state dict is a handful of levels; a TorchScript module tree is
    /// one level per submodule). Freeing a value recurses once per level, so this bound keeps that off the end of
    /// the stack.
    package static let maxDepth = 1_000

    package init(_ data: [UInt8]) { self.data = data }

    /// The value the pickle builds. Whatever it fails on, the partial values are taken apart iteratively, so no
    /// pickle, however deep or self-referential, can overflow the stack or leak when it is thrown away.
    package static func load(_ data: [UInt8]) throws(PickleError) -> PickleValue {
        var u = Unpickler(data)
        do {
            let root = try u.run()
            u.memo = [:]
            return root
        } catch {
            PickleValue.dismantle(u.stack + Array(u.memo.values))
            u.stack = []
            u.memo = [:]
            throw error
        }
    }

    /// Nil when `root` is nested at most `maxDepth` deep and its expansion (shared values counted each time they
    /// are reached) stays within `maxVisits` values; otherwise why not. A cycle exceeds any budget.
    static func shapeProblem(_ root: PickleValue, maxVisits: Int) -> String? {
        var work: [(value: PickleValue, depth: Int)] = [(root, 1)]
        var visits = 0
        while let (value, depth) = work.popLast() {
            visits += 1
            guard visits <= maxVisits else {
                return "its values expand to more than \(maxVisits) (shared or self-referencing containers)"
            }
            guard depth <= maxDepth else { return "values are nested deeper than \(maxDepth)" }
            switch value {
            case .tuple(let items): work += items.map { ($0, depth + 1) }
            case .list(let l): work += l.items.map { ($0, depth + 1) }
            case .dict(let d): for (k, v) in d.items { work += [(k, depth + 1), (v, depth + 1)] }
            case .object(let o): work.append((o.state, depth + 1))
            default: break
            }
        }
        return nil
    }

    private func fail(_ m: String, at o: Int? = nil) -> PickleError { PickleError(offset: o ?? pos, message: m) }

    private mutating func read(_ n: Int) throws(PickleError) -> ArraySlice<UInt8> {
        guard n >= 0, n <= data.count - pos else { throw fail("truncated pickle: needs \(n) more bytes at offset \(pos)") }
        defer { pos += n }
        return data[pos..<(pos + n)]
    }

    private mutating func uint(_ n: Int) throws(PickleError) -> Int {
        let b = try read(n)
        var v = 0
        for (i, x) in b.enumerated() { v |= Int(x) << (8 * i) }
        return v
    }

    private mutating func line() throws(PickleError) -> String {
        guard let end = data[pos...].firstIndex(of: 0x0A) else { throw fail("truncated pickle: unterminated GLOBAL") }
        defer { pos = end + 1 }
        return String(decoding: data[pos..<end], as: UTF8.self)
    }

    private mutating func pop() throws(PickleError) -> PickleValue {
        guard let v = stack.popLast() else { throw fail("stack underflow") }
        if let m = marks.last, stack.count < m { throw fail("stack underflow past a MARK") }
        return v
    }

    private mutating func popMark() throws(PickleError) -> [PickleValue] {
        guard let m = marks.popLast() else { throw fail("no MARK on the stack") }
        guard m <= stack.count else { throw fail("stack underflow") }
        let items = Array(stack[m...])
        stack.removeSubrange(m...)
        return items
    }

    private mutating func text(_ n: Int) throws(PickleError) -> String {
        let b = try read(n)
        guard let s = String(validating: b, as: UTF8.self) else { throw fail("string is not valid UTF-8") }
        return s
    }

    private mutating func run() throws(PickleError) -> PickleValue {
        while true {
            let at = pos
            opcodes += 1
            let op = try read(1)[at]
            if try pushLiteral(op, at) { continue }
            if try buildContainer(op, at) { continue }
            switch op {
            case 0x80: _ = try read(1)                                           // PROTO
            case 0x95: _ = try read(8)                                           // FRAME
            case 0x2E:                                                           // STOP
                guard stack.count == 1, marks.isEmpty else { throw fail("STOP with \(stack.count) values on the stack", at: at) }
                // Legitimate pickles reach each value a few times at most; 8 per opcode plus slack is generous.
                if let problem = Self.shapeProblem(stack[0], maxVisits: 8 * opcodes + 1_000_000) {
                    throw fail("refusing this pickle: \(problem)", at: at)
                }
                return stack.removeLast()
            case 0x28: marks.append(stack.count)                                 // MARK
            case 0x30: _ = try pop()                                             // POP
            case 0x31: _ = try popMark()                                         // POP_MARK
            case 0x71: try put(try uint(1), at)                                  // BINPUT
            case 0x72: try put(try uint(4), at)                                  // LONG_BINPUT
            case 0x94: try put(memo.count, at)                                   // MEMOIZE
            case 0x68: try get(try uint(1), at)                                  // BINGET
            case 0x6A: try get(try uint(4), at)                                  // LONG_BINGET
            case 0x63:                                                           // GLOBAL
                let module = try line(), name = try line()
                stack.append(try global(module, name, at))
            case 0x93:                                                           // STACK_GLOBAL
                guard case .string(let name) = try pop(), case .string(let module) = try pop() else {
                    throw fail("STACK_GLOBAL needs two strings", at: at)
                }
                stack.append(try global(module, name, at))
            case 0x51:                                                           // BINPERSID
                stack.append(try persistent(try pop(), at))
            case 0x52:                                                           // REDUCE
                let args = try pop(), callable = try pop()
                stack.append(try reduce(callable, args, at))
            case 0x81:                                                           // NEWOBJ
                let args = try pop(), cls = try pop()
                guard case .global(let module, let name) = cls else { throw fail("NEWOBJ on a non-class", at: at) }
                if module.hasPrefix("__torch__") {
                    stack.append(.object(PickleObject(className: "\(module).\(name)")))
                } else {
                    stack.append(try reduce(cls, args, at))
                }
            case 0x62:                                                           // BUILD
                let state = try pop()
                guard let target = stack.last else { throw fail("stack underflow", at: at) }
                switch target {
                case .object(let o): o.state = state
                case .dict, .tensor: break  // OrderedDict `_metadata`, tensor hooks state: not needed
                default: throw fail("BUILD on a value that takes no state", at: at)
                }
            default:
                throw fail("unsupported pickle opcode 0x\(String(op, radix: 16)) at offset \(at)", at: at)
            }
        }
    }

    /// Pushes the value of a literal opcode (none, booleans, integers, floats, strings, bytes).
    /// - Returns: false when `op` is not a literal.
    private mutating func pushLiteral(_ op: UInt8, _ at: Int) throws(PickleError) -> Bool {
        switch op {
        case 0x4E: stack.append(.none)                                       // NONE
        case 0x88: stack.append(.bool(true))                                 // NEWTRUE
        case 0x89: stack.append(.bool(false))                                // NEWFALSE
        case 0x4A: stack.append(.int(Int(Int32(truncatingIfNeeded: try uint(4)))))   // BININT
        case 0x4B: stack.append(.int(try uint(1)))                           // BININT1
        case 0x4D: stack.append(.int(try uint(2)))                           // BININT2
        case 0x8A:                                                           // LONG1
            let n = try uint(1)
            guard n <= 8 else { throw fail("integer of \(n) bytes is too large", at: at) }
            let b = try read(n)
            var v: Int64 = 0
            for (i, x) in b.enumerated() { v |= Int64(x) << (8 * Int64(i)) }
            if n > 0 && n < 8 && b.last! & 0x80 != 0 { v -= Int64(1) << (8 * Int64(n)) }
            stack.append(.int(Int(v)))
        case 0x47:                                                           // BINFLOAT
            var bits: UInt64 = 0
            for x in try read(8) { bits = bits << 8 | UInt64(x) }
            stack.append(.float(Double(bitPattern: bits)))
        case 0x58: stack.append(.string(try text(try uint(4))))              // BINUNICODE
        case 0x8C: stack.append(.string(try text(try uint(1))))              // SHORT_BINUNICODE
        case 0x8D: stack.append(.string(try text(try uint(8))))              // BINUNICODE8
        case 0x42: stack.append(.bytes(Array(try read(try uint(4)))))        // BINBYTES
        case 0x43: stack.append(.bytes(Array(try read(try uint(1)))))        // SHORT_BINBYTES
        case 0x8E: stack.append(.bytes(Array(try read(try uint(8)))))        // BINBYTES8
        default: return false
        }
        return true
    }

    /// Builds or extends a tuple, list or dict.
    /// - Returns: false when `op` is not a container opcode.
    private mutating func buildContainer(_ op: UInt8, _ at: Int) throws(PickleError) -> Bool {
        switch op {
        case 0x29: stack.append(.tuple([]))                                  // EMPTY_TUPLE
        case 0x74: stack.append(.tuple(try popMark()))                       // TUPLE
        case 0x85: let a = try pop(); stack.append(.tuple([a]))              // TUPLE1
        case 0x86: let b = try pop(); let a = try pop(); stack.append(.tuple([a, b]))           // TUPLE2
        case 0x87: let c = try pop(); let b = try pop(); let a = try pop(); stack.append(.tuple([a, b, c]))  // TUPLE3
        case 0x5D: stack.append(.list(PickleList()))                         // EMPTY_LIST
        case 0x6C: let l = PickleList(); l.items = try popMark(); stack.append(.list(l))  // LIST
        case 0x61:                                                           // APPEND
            let v = try pop()
            guard case .list(let l) = stack.last else { throw fail("APPEND to a non-list", at: at) }
            l.items.append(v)
        case 0x65:                                                           // APPENDS
            let items = try popMark()
            guard case .list(let l) = stack.last else { throw fail("APPENDS to a non-list", at: at) }
            l.items += items
        case 0x7D: stack.append(.dict(PickleDict()))                         // EMPTY_DICT
        case 0x64:                                                           // DICT
            let items = try popMark()
            guard items.count % 2 == 0 else { throw fail("DICT with an odd number of items", at: at) }
            let d = PickleDict()
            for i in stride(from: 0, to: items.count, by: 2) { d.items.append((items[i], items[i + 1])) }
            stack.append(.dict(d))
        case 0x73:                                                           // SETITEM
            let v = try pop(), k = try pop()
            guard case .dict(let d) = stack.last else { throw fail("SETITEM on a non-dict", at: at) }
            d.items.append((k, v))
        case 0x75:                                                           // SETITEMS
            let items = try popMark()
            guard items.count % 2 == 0, case .dict(let d) = stack.last else { throw fail("SETITEMS on a non-dict", at: at) }
            for i in stride(from: 0, to: items.count, by: 2) { d.items.append((items[i], items[i + 1])) }
        default: return false
        }
        return true
    }

    private mutating func put(_ i: Int, _ at: Int) throws(PickleError) {
        guard let top = stack.last else { throw fail("memo store from an empty stack", at: at) }
        memo[i] = top
    }

    private mutating func get(_ i: Int, _ at: Int) throws(PickleError) {
        guard let v = memo[i] else { throw fail("memo index \(i) was never stored", at: at) }
        stack.append(v)
    }

    static let allowedGlobals: Set<String> = [
        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state", "torch.Size",
        "torch.device", "_codecs.encode",
    ]

    private func global(_ module: String, _ name: String, _ at: Int) throws(PickleError) -> PickleValue {
        let full = "\(module).\(name)"
        if module.hasPrefix("__torch__") || Self.allowedGlobals.contains(full) { return .global(module: module, name: name) }
        if module == "torch", DType(torchStorage: name) != nil { return .global(module: module, name: name) }
        if module == "torch", ["float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool"].contains(name) {
            return .global(module: module, name: name)
        }
        throw fail("global '\(full)' is not allowed in a weights file (refusing to load it)", at: at)
    }

    private func persistent(_ pid: PickleValue, _ at: Int) throws(PickleError) -> PickleValue {
        guard case .tuple(let t) = pid, t.count == 5, case .string("storage") = t[0],
              case .global("torch", let typeName) = t[1], let dtype = DType(torchStorage: typeName),
              case .string(let key) = t[2], case .int(let count) = t[4], count >= 0 else {
            throw fail("unsupported persistent id (expected ('storage', torch.<Type>Storage, key, location, count))", at: at)
        }
        return .storage(StorageRef(dtype: dtype, key: key, count: count))
    }

    private func ints(_ v: PickleValue) -> [Int]? {
        switch v {
        case .tuple(let xs): return xs.map { if case .int(let i) = $0 { i } else { -1 } }
        case .list(let l): return l.items.map { if case .int(let i) = $0 { i } else { -1 } }
        default: return nil
        }
    }

    private func reduce(_ callable: PickleValue, _ args: PickleValue, _ at: Int) throws(PickleError) -> PickleValue {
        guard case .global(let module, let name) = callable else { throw fail("REDUCE on a value that is not callable", at: at) }
        guard case .tuple(let a) = args else { throw fail("REDUCE arguments are not a tuple", at: at) }
        switch "\(module).\(name)" {
        case "collections.OrderedDict":
            return .dict(PickleDict())
        case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
            guard a.count >= 4, case .storage(let s) = a[0], case .int(let offset) = a[1],
                  let shape = ints(a[2]), let stride = ints(a[3]) else {
                throw fail("malformed tensor record", at: at)
            }
            return .tensor(try tensor(s, offset, shape, stride, at))
        case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
            guard let first = a.first, case .tensor = first else { throw fail("parameter without a tensor", at: at) }
            return first
        case "torch.Size":
            return a.first ?? .tuple([])
        case "_codecs.encode":
            guard case .string(let s) = a.first else { throw fail("_codecs.encode without a string", at: at) }
            return .bytes(s.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) })
        default:
            throw fail("calling '\(module).\(name)' is not allowed", at: at)
        }
    }

    /// A tensor view, checked against its storage: no negative sizes or strides, an element count that fits, every
    /// element inside the storage.
    private func tensor(_ s: StorageRef, _ offset: Int, _ shape: [Int], _ stride: [Int], _ at: Int) throws(PickleError) -> TensorRef {
        guard shape.count == stride.count, offset >= 0, shape.allSatisfy({ $0 >= 0 }), stride.allSatisfy({ $0 >= 0 }) else {
            throw fail("tensor with size \(shape), stride \(stride), offset \(offset) is malformed", at: at)
        }
        guard Checked.product(shape) != nil else {
            throw fail("tensor of size \(shape) has more elements than can be counted", at: at)
        }
        if shape.contains(0) { return TensorRef(storage: s, offset: offset, shape: shape, stride: stride) }
        var last = offset
        for (n, st) in zip(shape, stride) {
            let (m, o1) = (n - 1).multipliedReportingOverflow(by: st)
            let (sum, o2) = last.addingReportingOverflow(m)
            guard !o1, !o2 else { throw fail("tensor size \(shape) with stride \(stride) overflows", at: at) }
            last = sum
        }
        guard last < s.count else {
            throw fail("tensor of size \(shape) (stride \(stride), offset \(offset)) reaches element \(last) of a \(s.count)-element storage '\(s.key)'", at: at)
        }
        return TensorRef(storage: s, offset: offset, shape: shape, stride: stride)
    }
}
