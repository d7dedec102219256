/// Chooses one option per unit so the total bytes fit a budget at the least total price: a
/// Lagrangian descent along each unit's lower convex hull of price against bytes, then a
/// greedy fill of what is left of the budget. Deterministic: ties go to the lower unit index.
public enum BudgetSolver {
    public struct Option: Sendable, Equatable {
        public var bytes: Int
        public var price: Double
        /// Whether taking this option prunes the unit (counted against its layer's limit).
        public var prunes: Bool
        public init(bytes: Int, price: Double, prunes: Bool = false) {
            self.bytes = bytes
            self.price = price
            self.prunes = prunes
        }
    }

    public struct Unit: Sendable, Equatable {
        public var options: [Option]
        /// Units sharing a prune group may be pruned at most `pruneLimit[group]` times.
        public var pruneGroup: Int?
        public init(options: [Option], pruneGroup: Int? = nil) {
            self.options = options
            self.pruneGroup = pruneGroup
        }
    }

    public struct Solution: Sendable, Equatable {
        /// Per unit, the index of the chosen option.
        public var choices: [Int]
        public var bytes: Int
        public var price: Double
    }

    public struct Infeasible: Error, CustomStringConvertible, Sendable {
        public let smallest: Int
        public let budget: Int
        public var description: String { "the budget of \(budget) bytes is below the smallest reachable size, \(smallest) bytes" }
    }

    /// The smallest total the units can reach within the prune limits.
    public static func smallest(_ units: [Unit], fixedBytes: Int, pruneLimit: [Int: Int]) -> Int {
        // Per prune group: take the unpruned minimum everywhere, then prune where it saves most.
        var total = fixedBytes
        var savings: [Int: [Int]] = [:]
        for unit in units {
            let kept = unit.options.filter { !$0.prunes }.map(\.bytes).min() ?? Int.max
            let pruned = unit.options.filter(\.prunes).map(\.bytes).min()
            if kept == Int.max { total += pruned ?? 0; continue }
            total += kept
            if let pruned, let g = unit.pruneGroup, pruned < kept { savings[g, default: []].append(kept - pruned) }
        }
        for (g, s) in savings { total -= s.sorted(by: >).prefix(pruneLimit[g] ?? 0).reduce(0, +) }
        return total
    }

    public static func solve(_ units: [Unit], fixedBytes: Int, budget: Int, pruneLimit: [Int: Int] = [:]) throws -> Solution {
        let minimum = smallest(units, fixedBytes: fixedBytes, pruneLimit: pruneLimit)
        guard minimum <= budget else { throw Infeasible(smallest: minimum, budget: budget) }
        var hulls = units.map { unit in
            let mayPrune = unit.pruneGroup.map { (pruneLimit[$0] ?? 0) > 0 } ?? false
            return hull(unit.options, among: unit.options.indices.filter { mayPrune || !unit.options[$0].prunes })
        }
        // Start from each unit's largest hull point (its best price) and step down.
        var position = hulls.map { $0.count - 1 }
        var pruned: [Int: Int] = [:]
        var total = fixedBytes
        for (u, unit) in units.enumerated() { total += unit.options[hulls[u][position[u]]].bytes }

        func slope(_ u: Int) -> Double {
            let here = units[u].options[hulls[u][position[u]]], next = units[u].options[hulls[u][position[u] - 1]]
            return (next.price - here.price) / Double(here.bytes - next.bytes)
        }
        while total > budget {
            var best: Int? = nil
            var bestSlope = Double.infinity
            for u in units.indices where position[u] > 0 {
                let s = slope(u)
                if s < bestSlope { bestSlope = s; best = u }
            }
            guard let u = best else { break }
            let here = units[u].options[hulls[u][position[u]]]
            position[u] -= 1
            let next = units[u].options[hulls[u][position[u]]]
            total += next.bytes - here.bytes
            if next.prunes, let g = units[u].pruneGroup {
                pruned[g, default: 0] += 1
                if pruned[g]! >= pruneLimit[g] ?? 0 {
                    // The group may prune no more: its other units step along their hulls
                    // without the prune option (a point of a hull stays on the smaller hull).
                    for v in units.indices where v != u && units[v].pruneGroup == g && !units[v].options[hulls[v][position[v]]].prunes {
                        let current = hulls[v][position[v]]
                        let allowed = units[v].options.indices.filter { !units[v].options[$0].prunes }
                        hulls[v] = hull(units[v].options, among: allowed)
                        position[v] = hulls[v].firstIndex(of: current)!
                    }
                }
            }
        }
        var choices = zip(position, hulls).map { $1[$0] }
        if total > budget { throw Infeasible(smallest: minimum, budget: budget) }  // unreachable: `smallest` is reachable
        fill(units, choices: &choices, total: &total, budget: budget)
        return Solution(choices: choices, bytes: total, price: zip(units, choices).reduce(0) { $0 + $1.0.options[$1.1].price })
    }

    /// Indices of the options on the lower convex hull of (bytes, price), by ascending bytes;
    /// options that cost more bytes for no lower price are left out.
    static func hull(_ options: [Option], among: [Int]? = nil) -> [Int] {
        let order = (among ?? Array(options.indices)).sorted { (options[$0].bytes, options[$0].price, $0) < (options[$1].bytes, options[$1].price, $1) }
        var frontier: [Int] = []
        for i in order {
            if let last = frontier.last, options[i].price >= options[last].price { continue }
            if let last = frontier.last, options[i].bytes == options[last].bytes { frontier.removeLast() }
            frontier.append(i)
        }
        var hull: [Int] = []
        for i in frontier {
            while hull.count >= 2 {
                let a = options[hull[hull.count - 2]], b = options[hull[hull.count - 1]], c = options[i]
                // Keep b only if it lies below the segment a-c.
                let cross = Double(b.bytes - a.bytes) * (c.price - a.price) - (b.price - a.price) * Double(c.bytes - a.bytes)
                if cross <= 0 { hull.removeLast() } else { break }
            }
            hull.append(i)
        }
        return hull
    }

    /// Spends what is left of the budget: repeatedly the upgrade (any option with more bytes
    /// and a lower price) with the largest price drop per byte that still fits.
    static func fill(_ units: [Unit], choices: inout [Int], total: inout Int, budget: Int) {
        while true {
            var best: (u: Int, o: Int, gain: Double)? = nil
            for (u, unit) in units.enumerated() {
                let here = unit.options[choices[u]]
                for (o, option) in unit.options.enumerated() where option.bytes > here.bytes && option.price < here.price {
                    guard total + option.bytes - here.bytes <= budget else { continue }
                    let gain = (here.price - option.price) / Double(option.bytes - here.bytes)
                    if best == nil || gain > best!.gain { best = (u, o, gain) }
                }
            }
            guard let b = best else { return }
            total += units[b.u].options[b.o].bytes - units[b.u].options[choices[b.u]].bytes
            choices[b.u] = b.o
        }
    }
}
