import CLIPIndex
import Testing

@Suite("query composition")
struct QueryTests {
    static let images: Set<String> = ["./pool.jpg", "cat.png"]
    static func parse(_ words: [String]) throws -> [QueryTerm] {
        try QueryTerm.parse(words, isImageFile: { images.contains($0) })
    }

    @Test("terms, operators, weights and images as rclip writes them", arguments: [
        (["a red car"], [QueryTerm(.text("a red car"))]),
        (["dog", "on", "a", "beach"], [QueryTerm(.text("dog on a beach"))]),
        (["2:golden retriever", "+", "./pool.jpg", "-", "fruit"],
         [QueryTerm(.text("golden retriever"), weight: 2), QueryTerm(.image("./pool.jpg")), QueryTerm(.text("fruit"), weight: -1)]),
        (["cat.png", "-", "0.5:cat.png"], [QueryTerm(.image("cat.png")), QueryTerm(.image("cat.png"), weight: -0.5)]),
        (["time: 10:30"], [QueryTerm(.text("time: 10:30"))]),
        (["-", "x"].dropFirst().map { $0 }, [QueryTerm(.text("x"))]),
    ])
    func parses(words: [String], expected: [QueryTerm]) throws {
        #expect(try Self.parse(words) == expected)
    }

    @Test("malformed queries are refused with the word named", arguments: [
        ([], "empty"),
        (["-", "fruit"], "word 1 '-'"),
        (["dog", "+"], "ends with an operator"),
        (["dog", "+", "-", "cat"], "word 3 '-'"),
        (["0:dog"], "positive number"),
        (["3:"], "empty term"),
        (["dog", "+", "  "], "word 3"),
    ])
    func refuses(words: [String], message: String) {
        #expect {
            _ = try Self.parse(words)
        } throws: { error in
            "\(error)".contains(message)
        }
    }
}
