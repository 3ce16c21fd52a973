import Testing
@testable import WireFormat

/// Base64 against RFC 4648's test vectors (section 10) and the forms TF Serving accepts.
@Suite struct Base64Tests {
    static let vectors: [(String, String)] = [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="),
                                              ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")]

    @Test func rfc4648Vectors() {
        for (plain, encoded) in Self.vectors {
            #expect(Base64.encode(Array(plain.utf8)) == encoded)
            #expect(Base64.decode(encoded) == Array(plain.utf8))
        }
    }

    @Test func unpaddedAndURLSafeAreAccepted() {
        #expect(Base64.decode("Zm9vYg") == Array("foob".utf8))
        #expect(Base64.decode("Zm9vYmE") == Array("fooba".utf8))
        #expect(Base64.decode("Zm9vYg=") == Array("foob".utf8))  // padding completed, as before
        #expect(Base64.decode("-_8") == [0xFB, 0xFF])
        #expect(Base64.decode("+/8=") == [0xFB, 0xFF])
    }

    @Test func invalidTextIsRejected() {
        for bad in ["not base64 at all!", "QUJD=QUJD", "A", "Zm9v====", "Zm9v Yg==", "Zg===", "Z==="] {
            #expect(Base64.decode(bad) == nil, "\(bad)")
        }
    }

    @Test func everyByteRoundTrips() {
        let bytes = (0..<256).map { UInt8($0) } + [0, 1]
        for length in 0...bytes.count where length % 37 == 0 || length < 5 {
            #expect(Base64.decode(Base64.encode(bytes.prefix(length))) == Array(bytes.prefix(length)))
        }
    }
}

@Suite struct PercentEncodingTests {
    @Test func pathSegments() throws {
        #expect(PercentEncoding.encodePathSegment("a b/c~d.e-f_g") == "a%20b%2Fc~d.e-f_g")
        #expect(PercentEncoding.encodePathSegment("größe") == "gr%C3%B6%C3%9Fe")
        #expect(try PercentEncoding.decodePathSegment("gr%C3%b6%C3%9Fe") == "größe")
        #expect(try PercentEncoding.decodePathSegment("plain") == "plain")
        #expect(throws: PercentEncoding.DecodingError.malformed) { try PercentEncoding.decodePathSegment("a%2") }
        #expect(throws: PercentEncoding.DecodingError.malformed) { try PercentEncoding.decodePathSegment("a%zz") }
        #expect(throws: PercentEncoding.DecodingError.notUTF8) { try PercentEncoding.decodePathSegment("%FF") }
    }

    @Test func grpcMessages() {
        #expect(PercentEncoding.encodeGRPCMessage("100% sure\n") == "100%25 sure%0A")
        #expect(PercentEncoding.decodeGRPCMessage("100%25 sure%0A") == "100% sure\n")
        // Receivers are lenient: a stray '%' stays.
        #expect(PercentEncoding.decodeGRPCMessage("50% off %4") == "50% off %4")
        let text = "größe: \u{1F600} 100%"
        #expect(PercentEncoding.decodeGRPCMessage(PercentEncoding.encodeGRPCMessage(text)) == text)
    }
}

@Suite struct GRPCFramingTests {
    @Test func prefixIsFlagAndBigEndianLength() {
        #expect(GRPCFraming.prefix(length: 0x0102_0304) == [0, 1, 2, 3, 4])
        #expect(GRPCFraming.messageLength([0, 1, 2, 3, 4, 99]) == 0x0102_0304)
        #expect(GRPCFraming.messageLength(Array([7, 7, 0, 0, 1, 0])[1...]) == 256)  // a slice not starting at 0
        #expect(GRPCFraming.frame([9, 8]) == [0, 0, 0, 0, 2, 9, 8])
        #expect(GRPCFraming.isCompressed([1, 0, 0, 0, 0]))
        #expect(!GRPCFraming.isCompressed([0, 0, 0, 0, 0]))
    }

    @Test func timeoutsRoundTrip() {
        #expect(GRPCFraming.timeoutValue(1.5) == "1500000u")
        #expect(GRPCFraming.timeoutValue(0) == "1u")
        #expect(GRPCFraming.timeoutValue(1000) == "1000000m")
        #expect(GRPCFraming.timeoutValue(1e9) == "16666667M")
        for seconds in [0.25, 3.0, 90.0, 86_400.0] {
            let back = GRPCFraming.timeoutSeconds(GRPCFraming.timeoutValue(seconds))!
            #expect(back >= seconds && back - seconds < seconds * 1e-6 + 1e-6)
        }
        #expect(GRPCFraming.timeoutSeconds("10s") == nil)
    }

    @Test func statusNames() {
        #expect(GRPCStatusCode.notFound.name == "NOT_FOUND")
        #expect(GRPCStatusCode.name(16) == "UNAUTHENTICATED")
        #expect(GRPCStatusCode.name(17) == "status 17")
        #expect(GRPCStatusCode.allCases.count == 17)
        #expect(GRPCStatusCode(httpStatus: 404) == .unimplemented)
        #expect(GRPCStatusCode(httpStatus: 503) == .unavailable)
        #expect(GRPCStatusCode(httpStatus: 500) == .unknown)
    }

    @Test func headerLookupIgnoresCase() {
        let headers = [("Content-Type", "a"), ("content-type", "b"), ("X-Other", "c")]
        #expect(HeaderList.first("CONTENT-TYPE", in: headers) == "a")
        #expect(HeaderList.first("x-other", in: headers) == "c")
        #expect(HeaderList.first("missing", in: headers) == nil)
        #expect(!HeaderList.equalsIgnoringCase("content-typé", "CONTENT-TYPÉ"))  // ASCII only
    }
}

/// NPY against files numpy 2.3 writes (np.save): same header text and padding, same payload.
@Suite struct NPYTests {
    static func numpyHeader(_ dict: String) -> [UInt8] {
        let text = dict + String(repeating: " ", count: 117 - dict.utf8.count) + "\n"
        return [0x93] + Array("NUMPY".utf8) + [1, 0, 118, 0] + Array(text.utf8)
    }

    @Test func writesWhatNumpyWrites() {
        let floats: [UInt8] = [0, 0, 0, 0, 0, 0, 0x80, 0x3F, 0, 0, 0, 0x40, 0, 0, 0x40, 0x40, 0, 0, 0x80, 0x40, 0, 0, 0xA0, 0x40]
        let array = NPYArray(dtype: .float32, shape: [2, 3], data: floats)
        #expect(array.npyBytes == Self.numpyHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }") + floats)
        #expect(array.npyBytes.count == 152)
        let strings = NPYArray.npyBytes(strings: [Array("ab".utf8), Array("c".utf8)], shape: [2])
        #expect(strings == Self.numpyHeader("{'descr': '|S2', 'fortran_order': False, 'shape': (2,), }") + [0x61, 0x62, 0x63, 0])
        let flags = NPYArray(dtype: .bool, shape: [2], data: [1, 0])
        #expect(flags.npyBytes == Self.numpyHeader("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }") + [1, 0])
    }

    @Test func readsWhatItWritesAndVersion2() throws {
        for dtype in NPYArray.DType.allCases {
            let array = NPYArray(dtype: dtype, shape: [3, 1], data: (0..<3 * dtype.size).map { UInt8($0 % 2) })
            let back = try NPYArray(npy: array.npyBytes)
            #expect(back.dtype == dtype && back.shape == [3, 1] && back.data == array.data)
        }
        let header = "{'descr': '<i8', 'fortran_order': False, 'shape': (), }\n"
        let version2 = [0x93] + Array("NUMPY".utf8) + [2, 0, UInt8(header.utf8.count), 0, 0, 0] + Array(header.utf8) + [5, 0, 0, 0, 0, 0, 0, 0]
        let scalar = try NPYArray(npy: version2)
        #expect(scalar.shape == [] && scalar.count == 1 && scalar.dtype == .int64)
    }

    @Test func errorsNameTheProblem() {
        func message(_ bytes: [UInt8]) -> String {
            do { _ = try NPYArray(npy: bytes); return "" } catch { return error.description }
        }
        #expect(message(Array("NUMPY".utf8)).contains("not a .npy"))
        #expect(message(Self.numpyHeader("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }") + [0, 0, 0, 0]).contains("big-endian"))
        #expect(message(Self.numpyHeader("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }") + [0, 0, 0, 0]).contains("Fortran"))
        #expect(message(Self.numpyHeader("{'descr': '<f2', 'fortran_order': False, 'shape': (1,), }") + [0, 0]).contains("not supported"))
        #expect(message(Self.numpyHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }") + [0, 0, 0, 0]).contains("needs 8"))
        #expect(message(Self.numpyHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }")).contains("too large"))
        #expect(message(Array(Self.numpyHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }").prefix(40))).contains("truncated"))
    }
}
