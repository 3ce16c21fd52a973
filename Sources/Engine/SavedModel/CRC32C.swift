import CLinuxShims

/// CRC-32C as leveldb tables and TensorFlow checkpoints store it (hardware crc32 instruction
/// when the CPU has SSE4.2, tables otherwise; see CLinuxShims/crc32c.c).
enum CRC32C {
    /// The checksum of `bytes`, continuing `crc` (the result of the preceding bytes; 0 to start).
    static func checksum(_ bytes: UnsafeRawBufferPointer, extending crc: UInt32 = 0, portable: Bool = false) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return cls_crc32c_extend(crc, base, bytes.count, portable ? 1 : 0)
    }

    static func checksum(_ bytes: [UInt8], extending crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, extending: crc) }
    }

    /// Whether `checksum` uses the SSE4.2 instruction.
    static var isHardware: Bool { cls_crc32c_hardware() != 0 }

    /// leveldb/TensorFlow's stored form: rotated right by 15 bits plus a constant, so that a
    /// CRC of data containing CRCs is not degenerate.
    static func mask(_ crc: UInt32) -> UInt32 { ((crc >> 15) | (crc << 17)) &+ 0xa282_ead8 }

    static func unmask(_ masked: UInt32) -> UInt32 {
        let rotated = masked &- 0xa282_ead8
        return (rotated >> 17) | (rotated << 15)
    }
}
