/// Runs a parsed template: scopes (a for loop's body has its own, as in Jinja, so `set` inside a
/// loop does not leak and `namespace()` is how templates carry state out), loop variables, and
/// expression evaluation. Filters, tests and methods live in JinjaBuiltins.swift.
struct JinjaInterpreter {
    var scopes: [[String: JinjaValue]]
    var output = ""
    var steps = 0

    private enum Flow { case normal, breakLoop, continueLoop }

    init(globals: [String: JinjaValue]) { scopes = [globals] }

    mutating func run(_ nodes: [JinjaNode]) throws {
        _ = try execute(nodes)
    }

    mutating func tick() throws {
        steps += 1
        if steps > JinjaTemplate.maxSteps { throw ChatTemplateError.limit("more than \(JinjaTemplate.maxSteps) evaluation steps") }
    }

    func lookup(_ name: String) -> JinjaValue {
        for scope in scopes.reversed() { if let v = scope[name] { return v } }
        return .undefined(name)
    }

    mutating func assign(_ name: String, _ value: JinjaValue) { scopes[scopes.count - 1][name] = value }

    mutating func emit(_ s: String) throws {
        output += s
        if output.utf8.count > JinjaTemplate.maxOutput { throw ChatTemplateError.limit("output longer than \(JinjaTemplate.maxOutput) bytes") }
    }

    private mutating func execute(_ nodes: [JinjaNode]) throws -> Flow {
        for node in nodes {
            try tick()
            switch node {
            case .text(let t): try emit(t)
            case .output(let e): try emit(try eval(e).str)
            case .conditional(let branches, let otherwise):
                var taken = false
                for (condition, body) in branches where try eval(condition).truthy {
                    taken = true
                    let flow = try execute(body)
                    if flow != .normal { return flow }
                    break
                }
                if !taken {
                    let flow = try execute(otherwise)
                    if flow != .normal { return flow }
                }
            case .loop(let targets, let iterable, let filter, let body, let otherwise):
                try loop(targets, iterable, filter, body, otherwise)
            case .set(let targets, let attribute, let expr):
                let value = try eval(expr)
                if let attribute {
                    guard case .namespace(let ns) = lookup(targets[0]) else {
                        throw ChatTemplateError.runtime("cannot set \(targets[0]).\(attribute): \(targets[0]) is not a namespace")
                    }
                    ns.object[attribute] = value
                } else if targets.count == 1 {
                    assign(targets[0], value)
                } else {
                    let items = try JinjaBuiltins.iterate(value)
                    guard items.count == targets.count else { throw ChatTemplateError.runtime("cannot unpack \(items.count) values into \(targets.count) names") }
                    for (t, v) in zip(targets, items) { assign(t, v) }
                }
            case .setBlock(let name, let body):
                let saved = output
                output = ""
                _ = try execute(body)
                let captured = output
                output = saved
                assign(name, .string(captured))
            case .breakLoop: return .breakLoop
            case .continueLoop: return .continueLoop
            case .generation(let body):
                let flow = try execute(body)
                if flow != .normal { return flow }
            }
        }
        return .normal
    }

    private mutating func loop(_ targets: [String], _ iterable: JinjaExpr, _ filter: JinjaExpr?,
                               _ body: [JinjaNode], _ otherwise: [JinjaNode]) throws {
        let source = try eval(iterable)
        var items: [JinjaValue]
        if case .object(let o) = source {
            items = o.keys.map { .string($0) }     // iterating a dict gives its keys
        } else {
            items = try JinjaBuiltins.iterate(source)
        }
        scopes.append([:])
        defer { scopes.removeLast() }
        func bind(_ item: JinjaValue, _ interpreter: inout JinjaInterpreter) throws {
            if targets.count == 1 {
                interpreter.assign(targets[0], item)
            } else {
                let parts = try JinjaBuiltins.iterate(item)
                guard parts.count == targets.count else { throw ChatTemplateError.runtime("cannot unpack \(parts.count) values into \(targets.count) loop names") }
                for (t, v) in zip(targets, parts) { interpreter.assign(t, v) }
            }
        }
        if let filter {
            var kept: [JinjaValue] = []
            for item in items {
                try tick()
                try bind(item, &self)
                if try eval(filter).truthy { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty {
            _ = try execute(otherwise)
            return
        }
        for (i, item) in items.enumerated() {
            try tick()
            try bind(item, &self)
            let n = items.count
            assign("loop", .object(JinjaObject([
                ("index", .int(i + 1)), ("index0", .int(i)), ("revindex", .int(n - i)), ("revindex0", .int(n - i - 1)),
                ("first", .bool(i == 0)), ("last", .bool(i == n - 1)), ("length", .int(n)),
                ("previtem", i > 0 ? items[i - 1] : .undefined("loop.previtem")),
                ("nextitem", i + 1 < n ? items[i + 1] : .undefined("loop.nextitem")),
            ])))
            if try execute(body) == .breakLoop { break }
        }
    }

    mutating func eval(_ e: JinjaExpr) throws -> JinjaValue {
        try tick()
        switch e {
        case .literal(let l):
            switch l {
            case .none: return .none
            case .bool(let b): return .bool(b)
            case .int(let i): return .int(i)
            case .double(let d): return .double(d)
            case .string(let s): return .string(s)
            }
        case .name(let n): return lookup(n)
        case .list(let items): return .array(try items.map { try eval($0) })
        case .dict(let pairs):
            var o = JinjaObject()
            for (k, v) in pairs { o[try eval(k).str] = try eval(v) }
            return .object(o)
        case .attribute(let base, let name):
            return try JinjaBuiltins.attribute(try eval(base), name)
        case .index(let base, let index):
            return try JinjaBuiltins.item(try eval(base), try eval(index))
        case .slice(let base, let a, let b, let c):
            return try JinjaBuiltins.slice(try eval(base), try a.map { try eval($0) }, try b.map { try eval($0) }, try c.map { try eval($0) })
        case .call(let callee, let args, let kwargs):
            let values = try args.map { try eval($0) }
            var named: [(String, JinjaValue)] = []
            for (k, v) in kwargs { named.append((k, try eval(v))) }
            if case .attribute(let base, let method) = callee {
                return try JinjaBuiltins.method(try eval(base), method, values, named)
            }
            guard case .name(let function) = callee else { throw ChatTemplateError.unsupported("calling an expression that is not a name or method") }
            if case .undefined = lookup(function) {
                return try JinjaBuiltins.function(function, values, named)
            }
            throw ChatTemplateError.unsupported("calling \(function) (macros and callable variables)")
        case .filter(let base, let name, let args, let kwargs):
            let value = try eval(base)
            let values = try args.map { try eval($0) }
            var named: [(String, JinjaValue)] = []
            for (k, v) in kwargs { named.append((k, try eval(v))) }
            return try JinjaBuiltins.filter(name, value, values, named)
        case .test(let base, let name, let args, let negated):
            let result = try JinjaBuiltins.test(name, try eval(base), try args.map { try eval($0) })
            return .bool(result != negated)
        case .unary(let op, let operand):
            let v = try eval(operand)
            switch op {
            case "not": return .bool(!v.truthy)
            case "-":
                if case .int(let i) = v { return .int(0 &- i) }
                guard let d = v.number else { throw ChatTemplateError.runtime("bad operand type for unary -: \(v.typeName)") }
                return .double(-d)
            default: return v
            }
        case .binary(let op, let l, let r):
            if op == "and" {
                let left = try eval(l)
                return left.truthy ? try eval(r) : left
            }
            if op == "or" {
                let left = try eval(l)
                return left.truthy ? left : try eval(r)
            }
            return try JinjaBuiltins.binary(op, try eval(l), try eval(r))
        case .conditional(let then, let condition, let otherwise):
            if try eval(condition).truthy { return try eval(then) }
            return try otherwise.map { try eval($0) } ?? .undefined("else")
        }
    }
}
