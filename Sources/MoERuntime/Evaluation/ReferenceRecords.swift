import Foundation
import MoEFormat
import MoEKernels

/// The per-position records of a reference file: what KL divergence, top-1 agreement and the
/// reference's perplexity need of a next-token distribution p, in 16 + 2·vocab bytes.
///
/// Exact: log p(target) (f32), argmax p (u32) and Σ p·log p (f64, the negative entropy).
/// Encoded: each log p_i as a u16 code c_i = round((max_j log p_j − log p_i) / step), clamped
/// to 65535, with step = range / 65535 and range = 32 nats (probabilities below e^−32 of the
/// top one count as that). KL(p‖q) = Σ p log p − Σ p log q takes its first term exactly and
/// its second from the decoded, renormalised p̃_i ∝ e^(−c_i·step): each log p_i is off by at
/// most step / 2 ≈ 2.4e-4 nats before renormalisation, and the errors of the many codes
/// mostly cancel (docs/eval.md gives the measured effect on mean KL).
enum ReferenceRecords {
    static let encoding = "logprob-u16"
    static let range = 32.0
    static let step = range / 65535

    /// e^(−c·step) for every code c: the unnormalised decoded probabilities.
    static let decodedWeights: [Double] = (0...65535).map { exp(-Double($0) * step) }

    /// Writes the records of the window's positions 0..<ids.count−1 (position i predicts token
    /// i+1) from its logits [ids.count, vocab]. Returns the window's summed −log p(target).
    static func encode(ids: [Int32], logits: [Float], vocab: Int, into records: inout [UInt8]) -> Double {
        let positions = ids.count - 1, recordBytes = ReferenceHeader.recordBytes(vocabSize: vocab)
        if records.count != positions * recordBytes { records = [UInt8](repeating: 0, count: positions * recordBytes) }
        var nll = 0.0
        logits.withUnsafeBufferPointer { all in
            records.withUnsafeMutableBytes { out in
                for position in 0..<positions {
                    let row = all.baseAddress! + position * vocab
                    let record = out.baseAddress! + position * recordBytes
                    let logZ = moe_log_sum_exp(row, vocab)
                    let top = moe_argmax(row, vocab)
                    let targetLogProb = Double(row[Int(ids[position + 1])]) - logZ
                    nll -= targetLogProb
                    var negEntropy = 0.0
                    let best = Double(row[top])
                    let codes = (record + 16).assumingMemoryBound(to: UInt16.self)
                    for i in 0..<vocab {
                        let logit = Double(row[i])
                        let logProb = logit - logZ
                        negEntropy += exp(logProb) * logProb
                        let code = ((best - logit) / step).rounded()
                        codes[i] = UInt16(min(code, 65535)).littleEndian
                    }
                    record.storeBytes(of: Float(targetLogProb).bitPattern.littleEndian, toByteOffset: 0, as: UInt32.self)
                    record.storeBytes(of: UInt32(top).littleEndian, toByteOffset: 4, as: UInt32.self)
                    record.storeBytes(of: negEntropy.bitPattern.littleEndian, toByteOffset: 8, as: UInt64.self)
                }
            }
        }
        return nll
    }

    /// Adds the model's predictions for one window (logits [positions + 1, vocab]) against the
    /// window's records into `totals`.
    static func score(ids: [Int32], logits: [Float], records: [UInt8], vocab: Int, into totals: inout Evaluator.Totals) {
        let positions = ids.count - 1, recordBytes = ReferenceHeader.recordBytes(vocabSize: vocab)
        decodedWeights.withUnsafeBufferPointer { weights in
            logits.withUnsafeBufferPointer { all in
                records.withUnsafeBytes { raw in
                    for position in 0..<positions {
                        let row = all.baseAddress! + position * vocab
                        let record = raw.baseAddress! + position * recordBytes
                        let targetLogProb = Double(Float(bitPattern: UInt32(littleEndian: record.loadUnaligned(fromByteOffset: 0, as: UInt32.self))))
                        let referenceTop = Int(UInt32(littleEndian: record.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
                        let negEntropy = Double(bitPattern: UInt64(littleEndian: record.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
                        let logZ = moe_log_sum_exp(row, vocab)
                        var mass = 0.0, weightedLogits = 0.0
                        for i in 0..<vocab {
                            let code = UInt16(littleEndian: record.loadUnaligned(fromByteOffset: 16 + 2 * i, as: UInt16.self))
                            let w = weights[Int(code)]
                            mass += w
                            weightedLogits += w * Double(row[i])
                        }
                        let crossEntropy = logZ - weightedLogits / mass
                        totals.nll += logZ - Double(row[Int(ids[position + 1])])
                        totals.referenceNLL -= targetLogProb
                        totals.kl += negEntropy + crossEntropy
                        if moe_argmax(row, vocab) == referenceTop { totals.agreements += 1 }
                        totals.predictions += 1
                    }
                }
            }
        }
    }
}
