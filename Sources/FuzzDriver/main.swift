#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CFuzzHooks
import Foundation
import MoEFuzz

// moepack-fuzz TARGET [FILE|DIR ...]
//   Without libFuzzer (the normal build): runs every file once and prints what each gave.
//   With libFuzzer (tools/fuzz.sh builds it so): fuzzes TARGET; the other arguments are
//   libFuzzer's (corpus directories, -max_total_time=N, ...).
// The target travels in MOEPACK_FUZZ_TARGET too, for the processes libFuzzer forks.

let usage = "usage: moepack-fuzz TARGET [FILE|DIR|libFuzzer flag ...]\ntargets: "
    + FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")

enum Selected {
    nonisolated(unsafe) static var target = FuzzTarget.safetensors
}

var arguments = CommandLine.arguments
if arguments.count > 1, let target = FuzzTarget(rawValue: arguments[1]) {
    Selected.target = target
    arguments.remove(at: 1)
    setenv("MOEPACK_FUZZ_TARGET", target.rawValue, 1)
} else if let name = ProcessInfo.processInfo.environment["MOEPACK_FUZZ_TARGET"], let target = FuzzTarget(rawValue: name) {
    Selected.target = target
} else {
    FileHandle.standardError.write(Data((usage + "\n").utf8))
    exit(2)
}

if moepack_fuzzer_linked() != 0 {
    // libFuzzer keeps argv for the whole run (and for the processes it forks): never freed.
    var argc = Int32(arguments.count)
    let cStrings = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: arguments.count + 1)
    for (i, a) in arguments.enumerated() { cStrings[i] = strdup(a) }
    cStrings[arguments.count] = nil
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = cStrings
    exit(moepack_fuzzer_run(&argc, &argv) { data, size in
        let input = size == 0 ? Data() : Data(bytes: data!, count: size)
        Selected.target.run(input)
        return 0
    })
}

// Replay: files, and the files in directories (not recursive), in name order.
var files: [URL] = []
for path in arguments.dropFirst() {
    let url = URL(fileURLWithPath: path)
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        FileHandle.standardError.write(Data("moepack-fuzz: no such file \(path)\n".utf8))
        exit(2)
    }
    if isDirectory.boolValue {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        files += names.filter { !$0.hasPrefix(".") }.sorted().map { url.appendingPathComponent($0) }
    } else {
        files.append(url)
    }
}
var accepted = 0
for file in files {
    guard let data = try? Data(contentsOf: file) else { continue }
    if let error = Selected.target.run(data) {
        print("\(file.lastPathComponent): error: \(String(describing: error).prefix(200))")
    } else {
        print("\(file.lastPathComponent): accepted")
        accepted += 1
    }
}
print("\(Selected.target.rawValue): \(files.count) inputs, \(accepted) accepted, \(files.count - accepted) rejected, no crash")
