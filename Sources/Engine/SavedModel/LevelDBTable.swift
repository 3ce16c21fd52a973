/// A leveldb-format sorted string table (TensorFlow's `table::`, which writes checkpoint
/// indexes), read whole:
///
///     [data block]... [metaindex block] [index block] [footer: 48 bytes]
///
/// footer = metaindex handle, index handle (each varint64 offset + varint64 size), zero padding
/// to 40 bytes (checked), magic 0xdb4775248b80fb57 (8 bytes LE). Every block is followed by a trailer:
/// compression type (1 byte; only 0 = none is supported) and the masked CRC-32C of the block's
/// contents plus that type byte (4 bytes LE). A block holds entries {varint32 shared, varint32
/// non_shared, varint32 value_length, key suffix, value} (key = previous key's first `shared`
/// bytes + suffix), then uint32 restart offsets, then uint32 restart count. The index block maps
/// a separator key >= each data block's last key to that block's handle.
enum LevelDBTable {
    static let magic: UInt64 = 0xdb47_7524_8b80_fb57
    static let footerSize = 48
    static let trailerSize = 5

    /// Every key and value of the table, keys strictly ascending (bytewise). Checks the footer,
    /// every block's checksum and structure, and that the keys are sorted and unique.
    /// `file` names the table in errors.
    static func entries(_ bytes: UnsafeRawBufferPointer, file: String) throws(EngineError) -> [(key: String, value: [UInt8])] {
        func corrupt(_ what: String) -> EngineError {
            .invalidModel("'\(file)' is not a valid checkpoint index (leveldb table): \(what)")
        }
        guard bytes.count >= footerSize else {
            throw corrupt("\(bytes.count) bytes, shorter than the \(footerSize)-byte footer (truncated?)")
        }
        var footer = ByteReader(UnsafeRawBufferPointer(rebasing: bytes[(bytes.count - footerSize)...]))
        guard let metaOffset = footer.varint64(), let metaSize = footer.varint64(),
              let indexOffset = footer.varint64(), let indexSize = footer.varint64() else {
            throw corrupt("the footer's block handles do not decode (truncated?)")
        }
        while footer.remaining > 8 {
            guard footer.take(1)![0] == 0 else { throw corrupt("the footer's padding is not zero (damaged?)") }
        }
        var magicReader = ByteReader(UnsafeRawBufferPointer(rebasing: bytes[(bytes.count - 8)...]))
        let low = UInt64(magicReader.fixed32()!), high = UInt64(magicReader.fixed32()!)
        guard high << 32 | low == magic else { throw corrupt("bad magic number at the end (truncated or not a table)") }

        let limit = bytes.count - footerSize
        _ = try block(bytes, offset: metaOffset, size: metaSize, limit: limit, what: "metaindex block", corrupt)
        let indexBlock = try block(bytes, offset: indexOffset, size: indexSize, limit: limit, what: "index block", corrupt)
        let index = try blockEntries(indexBlock, what: "index block", corrupt)

        var result: [(key: String, value: [UInt8])] = []
        var previous: [UInt8]?
        for (number, handle) in index.enumerated() {
            let handleValues = handle.value.withUnsafeBytes { raw -> (UInt64, UInt64)? in
                var reader = ByteReader(raw)
                guard let offset = reader.varint64(), let size = reader.varint64() else { return nil }
                return (offset, size)
            }
            guard let (offset, size) = handleValues else { throw corrupt("index entry \(number) is not a block handle") }
            let data = try block(bytes, offset: offset, size: size, limit: limit, what: "data block \(number)", corrupt)
            for entry in try blockEntries(data, what: "data block \(number)", corrupt) {
                if let previous, !lexicographicallyPrecedes(previous, entry.key) {
                    throw corrupt("keys out of order or repeated at '\(String(decoding: entry.key, as: UTF8.self))'")
                }
                previous = entry.key
                guard !lexicographicallyPrecedes(handle.key, entry.key) else {
                    throw corrupt("data block \(number) holds keys past its index key")
                }
                guard let key = String(validating: entry.key, as: UTF8.self) else {
                    throw corrupt("a key is not UTF-8 (after '\(result.last?.key ?? "")')")
                }
                result.append((key, entry.value))
            }
        }
        return result
    }

    /// The contents of the block at `offset` (`size` bytes, then the trailer), its checksum
    /// verified and its compression type checked.
    private static func block(_ bytes: UnsafeRawBufferPointer, offset: UInt64, size: UInt64, limit: Int, what: String,
                              _ corrupt: (String) -> EngineError) throws(EngineError) -> UnsafeRawBufferPointer {
        guard offset <= UInt64(limit), size <= UInt64(limit) - offset, UInt64(limit) - offset - size >= UInt64(trailerSize) else {
            throw corrupt("the \(what) (bytes \(offset)+\(size) and its trailer) lies past the end of the file's \(limit) bytes of blocks (truncated?)")
        }
        let start = Int(offset), end = start + Int(size)
        let contents = UnsafeRawBufferPointer(rebasing: bytes[start ..< end])
        let type = bytes[end]
        var trailer = ByteReader(UnsafeRawBufferPointer(rebasing: bytes[(end + 1) ..< (end + 5)]))
        let stored = trailer.fixed32()!
        let actual = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[start ... end]))
        guard CRC32C.mask(actual) == stored else {
            throw corrupt("checksum mismatch in the \(what) at byte \(offset) (file modified or damaged)")
        }
        guard type == 0 else {
            let kind = type == 1 ? "Snappy-compressed (written by TensorFlow 1.1 or older)" : "compressed with unknown type \(type)"
            throw corrupt("the \(what) is \(kind); only uncompressed tables are supported: re-save the checkpoint with a newer TensorFlow")
        }
        return contents
    }

    /// The (key, value) pairs of a block's contents, keys rebuilt from their shared prefixes.
    private static func blockEntries(_ contents: UnsafeRawBufferPointer, what: String,
                                     _ corrupt: (String) -> EngineError) throws(EngineError) -> [(key: [UInt8], value: [UInt8])] {
        guard contents.count >= 4 else { throw corrupt("the \(what) is \(contents.count) bytes, too short for its restart count") }
        var tail = ByteReader(UnsafeRawBufferPointer(rebasing: contents[(contents.count - 4)...]))
        let restarts = Int(tail.fixed32()!)
        guard restarts <= (contents.count - 4) / 4 else { throw corrupt("the \(what) declares \(restarts) restart points, more than fit") }
        let entriesEnd = contents.count - 4 - 4 * restarts
        var restartReader = ByteReader(UnsafeRawBufferPointer(rebasing: contents[entriesEnd ..< (contents.count - 4)]))
        var restartOffsets = Set<Int>()
        for _ in 0..<restarts {
            let offset = Int(restartReader.fixed32()!)
            guard offset < max(entriesEnd, 1) else { throw corrupt("a restart point of the \(what) lies outside its entries") }
            restartOffsets.insert(offset)
        }
        guard entriesEnd == 0 || restartOffsets.contains(0) else { throw corrupt("the \(what)'s first entry is not a restart point") }

        var reader = ByteReader(UnsafeRawBufferPointer(rebasing: contents[..<entriesEnd]))
        var result: [(key: [UInt8], value: [UInt8])] = []
        var key: [UInt8] = []
        while reader.remaining > 0 {
            let at = reader.position
            guard let shared = reader.varint32(), let unshared = reader.varint32(), let valueLength = reader.varint32() else {
                throw corrupt("entry \(result.count) of the \(what) has a malformed header")
            }
            guard Int(shared) <= key.count, !(restartOffsets.contains(at) && shared != 0) else {
                throw corrupt("entry \(result.count) of the \(what) shares \(shared) bytes with a \(key.count)-byte key")
            }
            guard let suffix = reader.take(Int(unshared)), let value = reader.take(Int(valueLength)) else {
                throw corrupt("entry \(result.count) of the \(what) runs past the block's end")
            }
            key.removeSubrange(Int(shared)...)
            key.append(contentsOf: suffix)
            result.append((key, Array(value)))
        }
        return result
    }

    /// Bytewise comparison (leveldb's default comparator): a < b.
    private static func lexicographicallyPrecedes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.lexicographicallyPrecedes(b)
    }
}
