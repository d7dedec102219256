import Foundation
import MoEFormat
@testable import MoEConvert
import MoERuntime
import MoETestSupport
import XCTest

/// The size-budget solver (docs/size-targets.md): the allocation rule on its own, and plans of
/// the built-in model converted and scored against the f32 model.
final class SizeTargetTests: XCTestCase {
    static let tinyMoE = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Sources/moepack/Resources/tiny-moe")

    // MARK: BudgetSolver

    /// Deterministic pseudo-random units: options with rising bytes and falling prices.
    private func randomUnits(_ count: Int, seed: UInt64, prunable: Bool) -> [BudgetSolver.Unit] {
        var state = seed
        func next() -> Double { state = state &* 6364136223846793005 &+ 1442695040888963407; return Double(state >> 11) / Double(1 << 53) }
        return (0..<count).map { u in
            var bytes = 0, price = 1.0 + next()
            var options: [BudgetSolver.Option] = prunable ? [.init(bytes: 0, price: price * 3, prunes: true)] : []
            for _ in 0..<4 {
                bytes += 10 + Int(next() * 90)
                price *= 0.2 + 0.6 * next()
                options.append(.init(bytes: bytes, price: price))
            }
            return BudgetSolver.Unit(options: options, pruneGroup: prunable ? u % 2 : nil)
        }
    }

    private func bruteForce(_ units: [BudgetSolver.Unit], budget: Int) -> Double {
        var best = Double.infinity
        func go(_ u: Int, _ bytes: Int, _ price: Double) {
            if bytes > budget { return }
            if u == units.count { best = min(best, price); return }
            for o in units[u].options { go(u + 1, bytes + o.bytes, price + o.price) }
        }
        go(0, 0, 0)
        return best
    }

    func testSolverFitsTheBudgetAndIsNearTheOptimum() throws {
        for seed in 1...20 as ClosedRange<UInt64> {
            let units = randomUnits(5, seed: seed, prunable: false)
            let largestStep = units.map { $0.options.map(\.bytes).max()! - $0.options.map(\.bytes).min()! }.max()!
            let high = units.reduce(0) { $0 + $1.options.map(\.bytes).max()! }
            let low = units.reduce(0) { $0 + $1.options.map(\.bytes).min()! }
            for budget in stride(from: low, through: high, by: max(1, (high - low) / 7)) {
                let s = try BudgetSolver.solve(units, fixedBytes: 0, budget: budget)
                XCTAssertLessThanOrEqual(s.bytes, budget)
                XCTAssertEqual(s.bytes, zip(units, s.choices).reduce(0) { $0 + $1.0.options[$1.1].bytes })
                XCTAssertEqual(s, try BudgetSolver.solve(units, fixedBytes: 0, budget: budget), "deterministic")
                // The hull descent is optimal at the bytes it stops at, which are within one
                // step of the budget; the fill only lowers the price further.
                XCTAssertLessThanOrEqual(s.price, bruteForce(units, budget: max(low, budget - largestStep)) * (1 + 1e-12))
                XCTAssertGreaterThanOrEqual(s.price, bruteForce(units, budget: budget) * (1 - 1e-12))
            }
        }
    }

    func testSolverKeepsThePruneLimitsAndRefusesAnUnreachableBudget() throws {
        let units = randomUnits(8, seed: 7, prunable: true)
        let limits = [0: 1, 1: 2]
        let smallest = BudgetSolver.smallest(units, fixedBytes: 100, pruneLimit: limits)
        let s = try BudgetSolver.solve(units, fixedBytes: 100, budget: smallest, pruneLimit: limits)
        XCTAssertEqual(s.bytes, smallest)
        for g in [0, 1] {
            let pruned = units.indices.filter { units[$0].pruneGroup == g && units[$0].options[s.choices[$0]].prunes }.count
            XCTAssertEqual(pruned, limits[g])
        }
        XCTAssertThrowsError(try BudgetSolver.solve(units, fixedBytes: 100, budget: smallest - 1, pruneLimit: limits)) { error in
            XCTAssertTrue("\(error)".contains("below the smallest reachable size, \(smallest) bytes"), "\(error)")
        }
    }

    // MARK: Plans of the built-in model

    private static func windows(_ file: String, tokens: Int) throws -> [[Int32]] {
        let checkpoint = try Checkpoint(directory: tinyMoE)
        return try SizePlanner.windows(checkpoint: checkpoint, data: tinyMoE.appendingPathComponent(file), maxTokens: tokens)
    }

    nonisolated(unsafe) private static let planned: (SizePlanner, CalibrationStats)? = {
        guard let checkpoint = try? Checkpoint(directory: tinyMoE), let weights = try? CheckpointWeights(checkpoint: checkpoint),
              let model = try? ErnieModel(weights: weights), let calibration = try? windows("calibration.txt", tokens: 8192),
              let stats = try? Calibrator.run(model: model, weights: weights, windows: calibration, source: "calibration.txt"),
              var planner = try? SizePlanner(checkpoint: checkpoint, stats: stats, importance: ImportanceMap(stats: stats)),
              (try? planner.price(windows: Array(calibration.prefix(8)))) != nil else { return nil }
        return (planner, stats)
    }()

    func testPlansLandWithinTheBudgetAndConvertAsPlanned() throws {
        let (planner, stats) = try XCTUnwrap(Self.planned)
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for bpw in [3.9, 4.5, 6.0] {
            let plan = try planner.plan(.bitsPerWeight(bpw))
            XCTAssertEqual(plan, try planner.plan(.bitsPerWeight(bpw)), "deterministic")
            XCTAssertLessThanOrEqual(plan.weightBytes, plan.targetBytes)
            XCTAssertGreaterThanOrEqual(Double(plan.weightBytes), 0.97 * Double(plan.targetBytes), "at \(bpw) bits/weight")
            let out = dir.appendingPathComponent("plan-\(bpw).mpk")
            try Converter.convert(checkpoint: Self.tinyMoE.path, output: out.path,
                                  options: ConvertOptions(profile: Profile.load("wint4"), pruneStage: CalibrationPruneStage(stats: stats),
                                                          importance: ImportanceMap(stats: stats), plan: plan))
            let bundle = try BundleFile(path: out.path)
            XCTAssertEqual(bundle.manifest.tensors.reduce(0) { $0 + $1.payload.rawLength }, plan.weightBytes, "planned bytes are stored bytes")
            for t in bundle.manifest.tensors { if let f = plan.formats[t.name] { XCTAssertEqual(t.format, f, t.name) } }
            XCTAssertEqual(bundle.manifest.pruning ?? [:], plan.kept)
            XCTAssertEqual(try bundle.fileData(named: SizePlan.fileName).map { try SizePlan(jsonData: $0) }, plan)
            XCTAssertEqual(bundle.manifest.provenance.parameters["size_target"], plan.target)
            // inspect's bits/weight over the parameters before pruning is the target's measure.
            let summary = BundleSummary(bundle: bundle)
            let measured = summary.unprunedBitsPerWeight ?? summary.bitsPerWeight
            XCTAssertLessThanOrEqual(measured, bpw + 1e-9, "at \(bpw) bits/weight")
            XCTAssertGreaterThanOrEqual(measured, 0.97 * bpw, "at \(bpw) bits/weight")
            XCTAssertEqual(summary.unprunedBitsPerWeight == nil, (bundle.manifest.pruning ?? [:]).isEmpty)
        }
    }

    /// The solver spends bytes where calibration says they matter: at the bytes of the
    /// uniform wint4-all bundle its plan scores a lower KL divergence on held-out text.
    func testPlanAtWint4AllBytesBeatsWint4All() throws {
        let (planner, stats) = try XCTUnwrap(Self.planned)
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let uniform = dir.appendingPathComponent("wint4-all.mpk"), planned = dir.appendingPathComponent("plan.mpk")
        let importance = try ImportanceMap(stats: stats)
        try Converter.convert(checkpoint: Self.tinyMoE.path, output: uniform.path,
                              options: ConvertOptions(profile: Profile.load("wint4-all"), importance: importance))
        let bytes = try BundleFile(path: uniform.path).manifest.tensors.reduce(0) { $0 + $1.payload.rawLength }
        let plan = try planner.plan(.bytes(bytes))
        try Converter.convert(checkpoint: Self.tinyMoE.path, output: planned.path,
                              options: ConvertOptions(profile: Profile.load("wint4"), importance: importance, plan: plan))
        let heldout = try Self.windows("heldout.txt", tokens: 4096).flatMap { $0 }
        let reference = try ErnieModel(weights: CheckpointWeights(checkpoint: Checkpoint(directory: Self.tinyMoE)))
        let reports = try Evaluator.evaluate(models: [ModelLoader.model(at: uniform.path, cachePrecision: .f32),
                                                      ModelLoader.model(at: planned.path, cachePrecision: .f32)],
                                             tokens: heldout, context: 256, reference: reference)
        let kl = reports.map { $0.reference!.meanKLDivergence }
        XCTAssertLessThan(kl[1], 0.9 * kl[0], "plan \(kl[1]) against wint4-all \(kl[0])")
    }

    func testTargetBelowTheSmallestPlanIsAClearError() throws {
        let (planner, _) = try XCTUnwrap(Self.planned)
        XCTAssertThrowsError(try planner.plan(.bitsPerWeight(0.5))) { error in
            XCTAssertTrue("\(error)".contains("is below the smallest this model reaches"), "\(error)")
        }
    }

    // MARK: --prune-ratio with any profile

    func testPruneRatioComposesWithAProfileWithoutAPruneStage() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, stats) = try XCTUnwrap(Self.planned)
        let out = dir.appendingPathComponent("w4p.mpk")
        try Converter.convert(checkpoint: Self.tinyMoE.path, output: out.path,
                              options: ConvertOptions(profile: Profile.load("wint4"), pruneStage: CalibrationPruneStage(stats: stats),
                                                      pruneRatio: 0.25))
        let pruning = try XCTUnwrap(BundleFile(path: out.path).manifest.pruning)
        XCTAssertEqual(pruning.keys.sorted(), ["1", "2", "3"])
        XCTAssertTrue(pruning.values.allSatisfy { $0.count == 12 })
        XCTAssertThrowsError(try Converter.convert(checkpoint: Self.tinyMoE.path, output: dir.appendingPathComponent("x.mpk").path,
                                                   options: ConvertOptions(profile: Profile.load("f32"), pruneRatio: 0.25))) { error in
            XCTAssertTrue("\(error)".contains("--prune-ratio needs calibration statistics"), "\(error)")
        }
    }
}
