import Foundation

/// The processor a benchmark ran on, so that every figure names its machine. A virtual machine's
/// model name is often only "AMD EPYC", which does not tell a Zen 3 from a Zen 4, so the x86
/// family and model numbers come with it.
public enum CPUDescription {
    /// This machine's, from /proc/cpuinfo; "unknown" where there is none.
    public static func current() -> String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown" }
        return describe(cpuinfo: text)
    }

    /// The first processor's model name, with "(family F, model M)" where cpuinfo gives both.
    static func describe(cpuinfo text: String) -> String {
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingCharacters(in: .whitespaces)
            guard ["model name", "cpu family", "model"].contains(key), fields[key] == nil else { continue }
            fields[key] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let name = fields["model name"].flatMap { $0.isEmpty ? nil : $0 } ?? "unknown"
        guard let family = fields["cpu family"].flatMap(Int.init), let model = fields["model"].flatMap(Int.init) else {
            return name
        }
        return "\(name) (family \(family), model \(model))"
    }
}
