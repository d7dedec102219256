@testable import MoERuntime
import XCTest

/// `bench` names the processor with every figure; a VM's "AMD EPYC" alone hides the generation.
final class CPUDescriptionTests: XCTestCase {
    func testX86NameCarriesFamilyAndModelOfTheFirstProcessor() {
        // The first lines of two processors as a Zen 3 KVM guest's /proc/cpuinfo lists them.
        let cpuinfo = """
        processor\t: 0
        vendor_id\t: AuthenticAMD
        cpu family\t: 25
        model\t\t: 1
        model name\t: AMD EPYC
        stepping\t: 1

        processor\t: 1
        vendor_id\t: AuthenticAMD
        cpu family\t: 25
        model\t\t: 17
        model name\t: Other
        """
        XCTAssertEqual(CPUDescription.describe(cpuinfo: cpuinfo), "AMD EPYC (family 25, model 1)")
    }

    func testArmCpuinfoWithoutModelNameIsUnknownNotACrash() {
        let cpuinfo = "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n"
        XCTAssertEqual(CPUDescription.describe(cpuinfo: cpuinfo), "unknown")
        XCTAssertEqual(CPUDescription.describe(cpuinfo: ""), "unknown")
    }
}
