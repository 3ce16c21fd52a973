import CLinuxShims
import Foundation
import Testing
@testable import Engine
import WireFormat

/// What Tests/Fixtures/make_small_savedmodels.py recorded next to each export.
struct SavedModelManifest: Decodable {
    struct Value: Decodable {
        let dtype: String?
        let shape: [Int]?
        let npy: String?
        let b64: [String]?
        let key: String?
        let node: String?
        let op: String?
        let kind: String?
    }
    struct Captures: Decodable {
        let function: String
        let signature: String
        let inputs: [Value]
    }
    let written: [Value]
    let checkpoint: [String: Value]
    let captures: Captures?
    let init_op: String?
    let num_shards: Int?
    let assets: [String: String]?

    static let names = ["tf1_graph", "tf2_module", "keras"]
    static func directory(_ name: String) -> String { "\(Fixtures.directory)/savedmodels/\(name)" }
    static func export(_ name: String) -> String { "\(directory(name))/export" }
    static func prefix(_ name: String) -> String { "\(export(name))/variables/variables" }

    static func load(_ name: String) throws -> SavedModelManifest {
        try JSONDecoder().decode(SavedModelManifest.self, from: Data(contentsOf: URL(fileURLWithPath: "\(directory(name))/manifest.json")))
    }

    /// The recorded value as a tensor (numeric) or byte strings (DT_STRING).
    func expected(_ value: Value, fixture: String) throws -> (tensor: HostTensor?, strings: [[UInt8]]?) {
        if let b64 = value.b64 { return (nil, b64.map { [UInt8](Data(base64Encoded: $0)!) }) }
        let array = try NPYArray(path: "\(Self.directory(fixture))/\(value.npy!)")
        let dtypes: [NPYArray.DType: DType] = [.float32: .float32, .float64: .float64, .int64: .int64, .int32: .int32,
                                               .int8: .int8, .uint8: .uint8, .bool: .bool]
        return (array.data.withUnsafeBytes { HostTensor(dtype: dtypes[array.dtype]!, shape: array.shape, copying: $0) }, nil)
    }
}

/// Byte-equal tensors (dtype, shape, bytes).
func sameTensor(_ a: HostTensor, _ b: HostTensor) -> Bool {
    a.dtype == b.dtype && a.shape == b.shape && memcmp(a.bytes, b.bytes, a.byteCount) == 0
}

/// A scratch copy of a fixture export that a test may damage; removed by `remove()`.
struct ScratchExport {
    let path: String
    init(_ fixture: String) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("savedmodel-\(UUID().uuidString)").path
        try FileManager.default.copyItem(atPath: SavedModelManifest.export(fixture), toPath: path)
    }
    var prefix: String { "\(path)/variables/variables" }
    func remove() { try? FileManager.default.removeItem(atPath: path) }

    func read(_ relative: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(path)/\(relative)"))) }
    func write(_ relative: String, _ bytes: [UInt8]) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: "\(path)/\(relative)"))
    }
    func flip(_ relative: String, at offset: Int) throws {
        var bytes = try read(relative)
        bytes[offset] ^= 0x20
        try write(relative, bytes)
    }
}

/// The error's message, or nil when `body` did not throw an EngineError.
func engineError(_ body: () throws -> Void) -> String? {
    do { try body() } catch let error as EngineError { return error.description } catch { return "not an EngineError: \(error)" }
    return nil
}

struct CRC32CTests {
    @Test func knownVectors() {
        // RFC 3720 (iSCSI) B.4 test vectors.
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xe306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8a91_36aa)
        #expect(CRC32C.checksum([UInt8](repeating: 0xff, count: 32)) == 0x62a8_ab43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46dd_794e)
        #expect(CRC32C.checksum([]) == 0)
        // Extending in pieces equals one pass.
        let bytes = Array("hello, checkpoint".utf8)
        #expect(CRC32C.checksum(Array(bytes[5...]), extending: CRC32C.checksum(Array(bytes[..<5]))) == CRC32C.checksum(bytes))
    }

    @Test func maskRoundTrip() {
        for value: UInt32 in [0, 1, 0xe306_9283, 0xffff_ffff, 0x1234_5678] {
            #expect(CRC32C.unmask(CRC32C.mask(value)) == value)
            #expect(CRC32C.mask(value) != value)
        }
        // leveldb's mask: rotate right 15, add 0xa282ead8.
        #expect(CRC32C.mask(0) == 0xa282_ead8)
    }

    /// The SSE4.2 path (three interleaved streams over 4 KiB blocks, joined by shift tables)
    /// equals the portable tables at every length and alignment around the block sizes.
    @Test func hardwareEqualsPortable() {
        var generator = SystemRandomNumberGenerator()
        let buffer = (0..<(3 * 4096 * 2 + 100)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        buffer.withUnsafeBytes { raw in
            for length in [0, 1, 7, 8, 9, 63, 4095, 4096, 12287, 12288, 12289, 24576 + 17, buffer.count - 3] {
                for start in 0..<3 {
                    let slice = UnsafeRawBufferPointer(rebasing: raw[start ..< start + min(length, raw.count - start)])
                    let fast = CRC32C.checksum(slice), slow = CRC32C.checksum(slice, portable: true)
                    #expect(fast == slow, "length \(length) start \(start)")
                    #expect(CRC32C.checksum(slice, extending: 0x1234_5678) == CRC32C.checksum(slice, extending: 0x1234_5678, portable: true))
                }
            }
        }
    }

    /// 100 MB checksummed in well under 100 ms (with the SSE4.2 instruction).
    @Test(.enabled(if: cls_crc32c_hardware() != 0)) func speed() {
        let count = 100_000_000
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 64)
        defer { buffer.deallocate() }
        for index in stride(from: 0, to: count, by: 4096) { buffer[index] = UInt8(truncatingIfNeeded: index >> 12) }
        var best = Double.infinity
        for _ in 0..<3 {
            let start = DispatchTime.now().uptimeNanoseconds
            _ = CRC32C.checksum(UnsafeRawBufferPointer(buffer))
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
        }
        // About 10 ms on an idle core; the bound leaves room for a machine shared with builds.
        #expect(best < 100, "100 MB took \(best) ms")
    }
}

struct TensorBundleTests {
    /// Every value the generator assigned is read back byte for byte under its key.
    @Test(arguments: SavedModelManifest.names) func writtenValues(fixture: String) throws {
        let manifest = try SavedModelManifest.load(fixture)
        let bundle = try TensorBundle(prefix: SavedModelManifest.prefix(fixture))
        #expect(bundle.numShards == (manifest.num_shards ?? 1))
        if fixture == "tf1_graph" {
            for value in manifest.written {
                let expected = try manifest.expected(value, fixture: fixture)
                if let strings = expected.strings {
                    #expect(try bundle.strings(value.key!) == strings, "\(value.key!)")
                } else {
                    let actual = try bundle.tensor(value.key!)
                    #expect(sameTensor(actual, expected.tensor!), "\(value.key!): \(actual) vs \(expected.tensor!)")
                }
            }
        }
    }

    /// Every entry equals what tf.train.load_checkpoint reads, and the keys are the same.
    @Test(arguments: SavedModelManifest.names) func checkpointValues(fixture: String) throws {
        let manifest = try SavedModelManifest.load(fixture)
        let bundle = try TensorBundle(prefix: SavedModelManifest.prefix(fixture))
        #expect(bundle.keys == manifest.checkpoint.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })
        for (key, value) in manifest.checkpoint {
            let entry = try #require(bundle.entry(key))
            #expect(entry.shape == value.shape, "\(key)")
            let expected = try manifest.expected(value, fixture: fixture)
            if let strings = expected.strings {
                #expect(entry.dtype == .dtString)
                #expect(try bundle.strings(key) == strings, "\(key)")
            } else {
                let actual = try bundle.tensor(key)
                #expect(sameTensor(actual, expected.tensor!), "\(key): \(actual) vs \(expected.tensor!)")
                let zeroCopy = try bundle.withVerifiedBytes(key) { Array($0) }
                #expect(zeroCopy == Array(UnsafeRawBufferPointer(start: actual.bytes, count: actual.byteCount)))
            }
        }
    }

    @Test func wrongKindsAndKeys() throws {
        let bundle = try TensorBundle(prefix: SavedModelManifest.prefix("tf1_graph"))
        #expect(engineError { _ = try bundle.tensor("no/such/key") }?.contains("no tensor 'no/such/key'") == true)
        #expect(engineError { _ = try bundle.tensor("labels") }?.contains("string tensor") == true)
        #expect(engineError { _ = try bundle.strings("dense/kernel") }?.contains("not DT_STRING") == true)
        #expect(bundle.entry("") == nil)
        #expect(try bundle.tensor("scalar").shape == [])
        #expect(try bundle.tensor("empty").shape == [0, 4])
    }

    @Test func shardPaths() {
        #expect(TensorBundle.shardPath(prefix: "v/variables", shard: 1, of: 2) == "v/variables.data-00001-of-00002")
        #expect(TensorBundle.shardPath(prefix: "p", shard: 123_456, of: 200_000) == "p.data-123456-of-200000")
    }

    // MARK: damaged files: each an error naming the problem, never a crash

    /// A flipped byte in a data shard: the index still opens, reading the tensor fails its checksum.
    @Test func flippedDataByte() throws {
        let scratch = try ScratchExport("tf1_graph")
        defer { scratch.remove() }
        let bundle = try TensorBundle(prefix: SavedModelManifest.prefix("tf1_graph"))
        let entry = try #require(bundle.entry("dense/kernel"))
        try scratch.flip("variables/" + TensorBundle.shardPath(prefix: "variables", shard: entry.shard, of: 2), at: entry.offset + 3)
        let damaged = try TensorBundle(prefix: scratch.prefix)
        let message = try #require(engineError { _ = try damaged.tensor("dense/kernel") })
        #expect(message.contains("checksum mismatch for tensor 'dense/kernel'"), "\(message)")
        #expect(message.contains("variables.data-0000\(entry.shard)-of-00002"), "\(message)")
        // Other tensors still read.
        #expect(try damaged.tensor("dense/bias").shape == [2])
        // A damaged string tensor.
        let labels = try #require(bundle.entry("labels"))
        try scratch.flip("variables/" + TensorBundle.shardPath(prefix: "variables", shard: labels.shard, of: 2), at: labels.offset + labels.size - 1)
        let message2 = try #require(engineError { _ = try TensorBundle(prefix: scratch.prefix).strings("labels") })
        #expect(message2.contains("string tensor 'labels' is corrupt"), "\(message2)")
    }

    /// Every single flipped byte of the index file is an error at open (block checksums cover
    /// the blocks; the footer's handles, padding and magic are checked).
    @Test(arguments: SavedModelManifest.names) func everyFlippedIndexByte(fixture: String) throws {
        let scratch = try ScratchExport(fixture)
        defer { scratch.remove() }
        let original = try scratch.read("variables/variables.index")
        for offset in original.indices {
            var bytes = original
            bytes[offset] ^= 0x01
            try scratch.write("variables/variables.index", bytes)
            let message = engineError { _ = try TensorBundle(prefix: scratch.prefix) }
            #expect(message != nil, "flipped byte \(offset) of \(original.count) went unnoticed")
            if let message { #expect(message.contains("variables.index"), "\(message)") }
        }
    }

    @Test func blockChecksumMessage() throws {
        let scratch = try ScratchExport("tf1_graph")
        defer { scratch.remove() }
        try scratch.flip("variables/variables.index", at: 10)
        let message = try #require(engineError { _ = try TensorBundle(prefix: scratch.prefix) })
        #expect(message.contains("checksum mismatch in the data block 0"), "\(message)")
    }

    @Test func missingShard() throws {
        let scratch = try ScratchExport("tf1_graph")
        defer { scratch.remove() }
        try FileManager.default.removeItem(atPath: "\(scratch.path)/variables/variables.data-00001-of-00002")
        let message = try #require(engineError { _ = try TensorBundle(prefix: scratch.prefix) })
        #expect(message.contains("variables.data-00001-of-00002"), "\(message)")
        #expect(message.contains("No such file"), "\(message)")
    }

    @Test func truncatedShard() throws {
        let scratch = try ScratchExport("tf2_module")
        defer { scratch.remove() }
        let shard = "variables/variables.data-00000-of-00001"
        let bytes = try scratch.read(shard)
        try scratch.write(shard, Array(bytes.dropLast(1)))
        let message = try #require(engineError { _ = try TensorBundle(prefix: scratch.prefix) })
        #expect(message.contains("past the file's end"), "\(message)")
    }

    @Test(arguments: SavedModelManifest.names) func truncatedIndex(fixture: String) throws {
        let scratch = try ScratchExport(fixture)
        defer { scratch.remove() }
        let original = try scratch.read("variables/variables.index")
        for length in 0..<original.count {
            try scratch.write("variables/variables.index", Array(original[..<length]))
            #expect(engineError { _ = try TensorBundle(prefix: scratch.prefix) } != nil, "truncated to \(length)")
        }
    }

    @Test func randomIndexBytes() throws {
        let scratch = try ScratchExport("tf2_module")
        defer { scratch.remove() }
        var generator = SystemRandomNumberGenerator()
        let original = try scratch.read("variables/variables.index")
        for round in 0..<300 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = (0..<Int.random(in: 0...600, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            } else {
                // A valid footer and magic with garbage blocks: exercises the block parser.
                bytes = (0..<(original.count - 48)).map { _ in UInt8.random(in: 0...255, using: &generator) } + original.suffix(48)
            }
            try scratch.write("variables/variables.index", bytes)
            #expect(engineError { _ = try TensorBundle(prefix: scratch.prefix) } != nil, "round \(round)")
        }
    }

    @Test func compressedBlockRefused() throws {
        let scratch = try ScratchExport("tf2_module")
        defer { scratch.remove() }
        var bytes = try scratch.read("variables/variables.index")
        // The first data block starts at 0; its trailer follows its contents. Mark it Snappy
        // and re-checksum so only the compression type is wrong.
        let size = bytes.withUnsafeBytes { raw -> Int in
            // Index block: first entry's value is the data block handle.
            var reader = ByteReader(UnsafeRawBufferPointer(rebasing: raw[(raw.count - 48)...]))
            _ = reader.varint64(); _ = reader.varint64()
            let indexOffset = Int(reader.varint64()!)
            var index = ByteReader(UnsafeRawBufferPointer(rebasing: raw[indexOffset...]))
            _ = index.varint32(); let unshared = Int(index.varint32()!); _ = index.varint32()
            _ = index.take(unshared)
            _ = index.varint64()
            return Int(index.varint64()!)
        }
        bytes[size] = 1
        let crc = CRC32C.mask(CRC32C.checksum(Array(bytes[...size])))
        for index in 0..<4 { bytes[size + 1 + index] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(index))) }
        try scratch.write("variables/variables.index", bytes)
        let message = try #require(engineError { _ = try TensorBundle(prefix: scratch.prefix) })
        #expect(message.contains("Snappy"), "\(message)")
    }
}
