import XCTest
@testable import MoETokenizer

/// The Jinja subset on small templates whose expected results are what jinja2 3.1.6 renders (checked
/// with trim_blocks, lstrip_blocks and loopcontrols, as transformers sets it up), the errors, the limits.
final class JinjaTests: XCTestCase {
    func render(_ source: String, _ variables: [String: JinjaValue] = [:]) throws -> String {
        try JinjaTemplate(source).render(variables)
    }

    func testExpressionsAndFilters() throws {
        XCTAssertEqual(try render("{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }}"),
                       "7 3 -4 1 2 3.5 1024")
        XCTAssertEqual(try render("{{ 'a' ~ 1 ~ none }} {{ true and 'x' }} {{ '' or 'y' }} {{ not 0 }}"), "a1None x y True")
        XCTAssertEqual(try render("{{ 'x' if 1 > 2 else 'y' }}|{{ 'x' if false }}|"), "y||")
        XCTAssertEqual(try render("{{ [1, 2, 3][::-1] }} {{ 'hello'[1:3] }} {{ [1,2,3][-1] }} {{ {'a': 1}['a'] }}"), "[3, 2, 1] el 3 1")
        XCTAssertEqual(try render("{{ '  a b  '|trim }}|{{ [1,2]|length }}|{{ x|default('d') }}|{{ ''|default('e', true) }}"), "a b|2|d|e")
        XCTAssertEqual(try render("{{ {'k': [1, 'é', none, true]}|tojson }} {{ 'a\"b'|tojson }}"), #"{"k": [1, "é", null, true]} "a\"b""#)
        XCTAssertEqual(try render("{{ {'a': 1}|tojson(indent=2) }}"), "{\n  \"a\": 1\n}")
        XCTAssertEqual(try render("{{ ['a','b']|join(', ') }} {{ 'AbC'|lower }} {{ 'ab'|upper }} {{ [3,1]|first }} {{ 'x'|string }}"), "a, b abc AB 3 x")
    }

    func testStringMethods() throws {
        XCTAssertEqual(try render("{{ 'a</think>b'.split('</think>')[-1] }} {{ '\\n\\nx\\n'.strip('\\n') }} {{ '  x '.lstrip() }}| {{ 'xyy'.rstrip('y') }}"), "b x x | x")
        XCTAssertEqual(try render("{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'a-b-c'.replace('-', '+') }} {{ ' a  b '.split() }}"),
                       "True True a+b+c ['a', 'b']")
        XCTAssertEqual(try render("{{ 'x' in 'xyz' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'q' not in 'xyz' }}"), "True True True True")
    }

    func testStatementsAndWhitespace() throws {
        let loop = "{% for x in xs %}{{ loop.index }}{{ x }}{% if loop.first %}F{% elif loop.last %}L{% else %}-{% endif %}{% endfor %}"
        XCTAssertEqual(try render(loop, ["xs": .array([.string("a"), .string("b"), .string("c")])]), "1aF2b-3cL")
        XCTAssertEqual(try render("{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% set local = i %}{% endfor %}{{ ns.n }}{{ local }}"), "6")
        XCTAssertEqual(try render("{% for i in range(5) if i is odd %}{{ i }}{% else %}none{% endfor %}{% for i in [] %}x{% else %}E{% endfor %}"), "13E")
        XCTAssertEqual(try render("{% for i in range(9) %}{% if i == 3 %}{% break %}{% endif %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}"), "02")
        XCTAssertEqual(try render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"), "a=1;b=2;")
        XCTAssertEqual(try render("{% set a, b = [1, 2] %}{{ b }}{{ a }}{% set t %}in{{ a }}{% endset %}{{ t }}"), "21in1")
        // trim_blocks, lstrip_blocks, - and +, the trailing newline.
        XCTAssertEqual(try render("  {% if true %}\n  x\n  {% endif %}\ny\n"), "  x\ny")
        XCTAssertEqual(try render("a  {%- if true -%}  b  {%- endif %}\n c"), "ab c")
        XCTAssertEqual(try render("a\n    {%+ if true %}b{% endif %}"), "a\n    b")
        XCTAssertEqual(try render("{# comment #}\nx {{- ' y' }} {#- c -#} z"), "x yz")
        XCTAssertEqual(try render("{% generation %}g{% endgeneration %}"), "g")
    }

    func testTests() throws {
        XCTAssertEqual(try render("{{ x is defined }} {{ x is not defined }} {{ none is none }} {{ 'a' is string }} {{ 3 is divisibleby 3 }} {{ {} is mapping }}"),
                       "False True True True True True")
        XCTAssertEqual(try render("{{ m.missing is defined }} {{ m.role }}", ["m": .object(JinjaObject([("role", .string("user"))]))]), "False user")
    }

    func testRaiseExceptionAndErrors() throws {
        XCTAssertThrowsError(try render("{{ raise_exception('no') }}")) { XCTAssertEqual($0 as? ChatTemplateError, .raised("no")) }
        func unsupported(_ source: String, _ word: String) {
            XCTAssertThrowsError(try render(source), source) { error in
                guard case .unsupported(let m)? = error as? ChatTemplateError else { return XCTFail("\(error)") }
                XCTAssertTrue(m.contains(word), m)
            }
        }
        unsupported("{% macro f() %}x{% endmacro %}", "macro")
        unsupported("{{ x|wordwrap }}", "filter wordwrap")
        unsupported("{{ 'a'.zfill(3) }}", "str.zfill")
        unsupported("{{ lipsum() }}", "lipsum")
        unsupported("{% include 'x' %}", "include")
        unsupported("{{ x is prime }}", "test prime")
        for bad in ["{% if x %}", "{{ 1 + }}", "{% for %}", "{{ 'unclosed }}", "{% endfor %}", "{{ (1 }}", "{% set %}", "{{ a.1 }}"] {
            XCTAssertThrowsError(try render(bad), bad) { XCTAssertNotNil($0 as? ChatTemplateError, "\(bad): \($0)") }
        }
        XCTAssertThrowsError(try render("{{ undefined_thing.attr }}"))
        XCTAssertThrowsError(try render("{{ 1 / 0 }}"))
        XCTAssertThrowsError(try render("{{ 'a' + 1 }}"))
    }

    func testHostileTemplatesAreBounded() throws {
        func limited(_ source: String) {
            XCTAssertThrowsError(try render(source), String(source.prefix(60))) { error in
                guard case .limit? = error as? ChatTemplateError else { return XCTFail("\(error)") }
            }
        }
        limited(String(repeating: "{% if true %}", count: 200) + String(repeating: "{% endif %}", count: 200))
        limited("{{ " + String(repeating: "(", count: 500) + "1" + String(repeating: ")", count: 500) + " }}")
        limited("{{ " + String(repeating: "not ", count: 500) + "1 }}")
        limited("{% for i in range(1000000000) %}x{% endfor %}")
        limited("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}")
        limited("{{ 'x' * 100000000 }}")
        limited("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}")
    }
}
