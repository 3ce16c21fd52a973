import Testing
@testable import Transport

/// Vectors made by Python's gzip/zlib modules (not by the code under test).
@Suite struct ContentCodingTests {
    static let text = Array(String(repeating: "swift-model-server ", count: 20).utf8)  // 380 bytes
    static let gzip: [UInt8] = [31, 139, 8, 0, 0, 0, 0, 0, 2, 3, 43, 46, 207, 76, 43, 209, 205, 205, 79, 73, 205, 209, 45, 78, 45, 42, 75, 45, 82, 40, 30, 21, 162, 143, 16, 0, 23, 195, 231, 1, 124, 1, 0, 0]
    static let zlib: [UInt8] = [120, 156, 43, 46, 207, 76, 43, 209, 205, 205, 79, 73, 205, 209, 45, 78, 45, 42, 75, 45, 82, 40, 30, 21, 162, 143, 16, 0, 253, 74, 146, 45]
    static let rawDeflate: [UInt8] = [43, 46, 207, 76, 43, 209, 205, 205, 79, 73, 205, 209, 45, 78, 45, 42, 75, 45, 82, 40, 30, 21, 162, 143, 16, 0]
    /// zlib.compress(bytes(100000), 9): 100,000 zero bytes in 120.
    static let zeros: [UInt8] = [120, 218, 237, 193, 49, 1, 0, 0, 0, 194, 160, 245, 79, 109, 13, 15, 160]
        + [UInt8](repeating: 0, count: 96) + [128, 87, 3, 134, 175, 0, 1]

    @Test func decodesGzipZlibAndRawDeflate() throws {
        #expect(try ContentCoding.decode(Self.gzip, coding: "gzip", limit: 1000) == Self.text)
        #expect(try ContentCoding.decode(Self.gzip, coding: "X-GZIP", limit: 1000) == Self.text)
        #expect(try ContentCoding.decode(Self.zlib, coding: "deflate", limit: 1000) == Self.text)
        #expect(try ContentCoding.decode(Self.rawDeflate, coding: "deflate", limit: 1000) == Self.text)
        #expect(try ContentCoding.decode(Self.text, coding: "identity", limit: 1000) == Self.text)
        // Concatenated gzip members are one body.
        #expect(try ContentCoding.decode(Self.gzip + Self.gzip, coding: "gzip", limit: 1000) == Self.text + Self.text)
        #expect(try ContentCoding.decode(Self.zeros, coding: "deflate", limit: 100_000) == [UInt8](repeating: 0, count: 100_000))
    }

    @Test func rejectsWhatItCannotDecode() {
        #expect(throws: ContentCoding.Failure.unsupported("br")) { try ContentCoding.decode(Self.gzip, coding: "br", limit: 1000) }
        #expect(throws: ContentCoding.Failure.tooLarge(limit: 379)) { try ContentCoding.decode(Self.gzip, coding: "gzip", limit: 379) }
        // A small body that expands past the limit stops at the limit.
        #expect(throws: ContentCoding.Failure.tooLarge(limit: 65_536)) { try ContentCoding.decode(Self.zeros, coding: "deflate", limit: 65_536) }
        for (data, coding) in [(Array(Self.gzip.dropLast(12)), "gzip"), (Self.zlib, "gzip"), ([], "gzip"),
                               (Array("not compressed".utf8), "deflate"), (Self.gzip + [1, 2, 3], "gzip")] {
            do {
                _ = try ContentCoding.decode(data, coding: coding, limit: 1000)
                Issue.record("\(data.count) bytes as \(coding) must fail")
            } catch {
                guard case .corrupt = error else { Issue.record("\(error) for \(data.count) bytes as \(coding)"); continue }
            }
        }
    }
}
