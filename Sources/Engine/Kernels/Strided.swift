/// Strided iteration shared by broadcasting, slicing, transposing and padding kernels.
/// Shapes and strides are in elements; strides may be 0 (broadcast) or negative (reversed slice).

/// An N-d walk over an output in C order, with the matching offsets of up to two sources.
/// Adjacent dimensions that stay contiguous for every operand are merged at prepare time,
/// so the innermost loop is as long as possible.
struct StridedWalk: Sendable {
    /// Collapsed output shape; the innermost dimension is `shape.last`.
    let shape: [Int]
    let strides: [[Int]]

    /// `strides[k][d]` is operand k's stride for output dimension d (the output's own strides are implied).
    /// An empty shape (a 0 dimension) walks one row of 0 elements.
    init(shape: [Int], strides: [[Int]]) {
        if shape.contains(0) {
            self.shape = [0]
            self.strides = strides.map { _ in [0] }
            return
        }
        var outShape: [Int] = []
        var outStrides = strides.map { _ in [Int]() }
        for d in 0..<shape.count where shape[d] != 1 {
            if let last = outShape.indices.last,
               strides.indices.allSatisfy({ k in
                   // Overflow (shapes the planner refuses right after prepare) means "do not merge".
                   let (product, overflow) = strides[k][d].multipliedReportingOverflow(by: shape[d])
                   return !overflow && outStrides[k][last] == product
               }) {
                outShape[last] *= shape[d]
                for k in strides.indices { outStrides[k][last] = strides[k][d] }
            } else {
                outShape.append(shape[d])
                for k in strides.indices { outStrides[k].append(strides[k][d]) }
            }
        }
        if outShape.isEmpty {
            outShape = [1]
            for k in strides.indices { outStrides[k] = [0] }
        }
        self.shape = outShape
        self.strides = outStrides
    }

    var count: Int { shape.elementCount }
    var innerCount: Int { shape.last! }

    /// Calls `row(outputOffset, sourceOffsets...)` once per innermost row, in output order.
    /// `row` gets the starting offsets; the row's length is `innerCount`, and each source
    /// advances by `strides[k].last!` per element.
    @inline(__always)
    func forEachRow(_ row: (Int, Int, Int) -> Void) {
        let rank = shape.count
        let inner = shape[rank - 1]
        if rank == 1 { row(0, 0, 0); return }
        let outerCount = count / inner
        let s0 = strides.count > 0 ? strides[0] : [Int](repeating: 0, count: rank)
        let s1 = strides.count > 1 ? strides[1] : [Int](repeating: 0, count: rank)
        withUnsafeTemporaryAllocation(of: Int.self, capacity: rank) { index in
            index.initialize(repeating: 0)
            var offset0 = 0, offset1 = 0
            for outer in 0..<outerCount {
                row(outer * inner, offset0, offset1)
                var d = rank - 2
                while d >= 0 {
                    index[d] += 1
                    offset0 += s0[d]
                    offset1 += s1[d]
                    if index[d] < shape[d] { break }
                    offset0 -= s0[d] * shape[d]
                    offset1 -= s1[d] * shape[d]
                    index[d] = 0
                    d -= 1
                }
            }
        }
    }
}

extension StridedWalk {
    /// Number of innermost rows.
    var rowCount: Int { innerCount == 0 ? 0 : count / innerCount }

    /// `forEachRow` restricted to rows `rows` (in output order): `row(outputOffset,
    /// offset0, offset1)` for each. The start index is computed once, then advanced.
    @inline(__always)
    func forEachRow(in rows: Range<Int>, _ row: (Int, Int, Int) -> Void) {
        let rank = shape.count
        let inner = shape[rank - 1]
        guard !rows.isEmpty else { return }
        if rank == 1 { row(0, 0, 0); return }
        let s0 = strides.count > 0 ? strides[0] : [Int](repeating: 0, count: rank)
        let s1 = strides.count > 1 ? strides[1] : [Int](repeating: 0, count: rank)
        withUnsafeTemporaryAllocation(of: Int.self, capacity: rank) { index in
            index.initialize(repeating: 0)
            var offset0 = 0, offset1 = 0
            var rest = rows.lowerBound
            for d in stride(from: rank - 2, through: 0, by: -1) {
                let (q, r) = rest.quotientAndRemainder(dividingBy: shape[d])
                index[d] = r
                offset0 += r * s0[d]
                offset1 += r * s1[d]
                rest = q
            }
            for outer in rows {
                row(outer * inner, offset0, offset1)
                var d = rank - 2
                while d >= 0 {
                    index[d] += 1
                    offset0 += s0[d]
                    offset1 += s1[d]
                    if index[d] < shape[d] { break }
                    offset0 -= s0[d] * shape[d]
                    offset1 -= s1[d] * shape[d]
                    index[d] = 0
                    d -= 1
                }
            }
        }
    }
}

/// Splits `count` elements of work into pieces for `io`'s workers: one piece (the caller's
/// thread) below `minimum` elements per worker, else one contiguous range per worker.
/// Memory-bound passes under 1 MiB per worker take tens of microseconds, about what waking
/// and joining a worker costs (far more when its vCPU is busy), so they stay on one thread.
func splitWork(_ io: KernelIO, units: Int, elementsPerUnit: Int, minimum: Int = 262_144, _ body: (Range<Int>) -> Void) {
    if io.width > 1 && units > 1 && units * elementsPerUnit >= minimum * 2 {
        io.parallelRanges(units) { range, _ in if !range.isEmpty { body(range) } }
    } else {
        body(0..<units)
    }
}

/// Strides that broadcast a tensor of `shape` to `outputShape` (numpy rules, right-aligned).
func broadcastStrides(_ shape: Shape, to outputShape: Shape) -> [Int] {
    let own = contiguousStrides(shape)
    let offset = outputShape.count - shape.count
    return outputShape.indices.map { d in
        let sd = d - offset
        return sd < 0 || shape[sd] == 1 ? 0 : own[sd]
    }
}

/// numpy broadcasting of two shapes; nil when they are incompatible.
func broadcastShapes(_ a: Shape, _ b: Shape) -> Shape? {
    let rank = max(a.count, b.count)
    var result = [Int](repeating: 1, count: rank)
    for d in 0..<rank {
        let x = d - (rank - a.count) >= 0 ? a[d - (rank - a.count)] : 1
        let y = d - (rank - b.count) >= 0 ? b[d - (rank - b.count)] : 1
        if x == y || y == 1 { result[d] = x } else if x == 1 { result[d] = y } else { return nil }
    }
    return result
}

/// Copies elements of `elementSize` bytes from `source` (walked with `walk.strides[0]`,
/// starting at element `base`) to a contiguous `destination`.
func stridedCopy(_ walk: StridedWalk, elementSize: Int, base: Int,
                 from source: UnsafeRawPointer, to destination: UnsafeMutableRawPointer) {
    switch elementSize {
    case 4: stridedCopy(walk, base: base, source.assumingMemoryBound(to: UInt32.self), destination.assumingMemoryBound(to: UInt32.self))
    case 8: stridedCopy(walk, base: base, source.assumingMemoryBound(to: UInt64.self), destination.assumingMemoryBound(to: UInt64.self))
    case 2: stridedCopy(walk, base: base, source.assumingMemoryBound(to: UInt16.self), destination.assumingMemoryBound(to: UInt16.self))
    default: stridedCopy(walk, base: base, source.assumingMemoryBound(to: UInt8.self), destination.assumingMemoryBound(to: UInt8.self))
    }
}

@inline(__always)
private func stridedCopy<T>(_ walk: StridedWalk, base: Int, _ source: UnsafePointer<T>, _ destination: UnsafeMutablePointer<T>) {
    let inner = walk.innerCount
    let step = walk.strides[0].last!
    walk.forEachRow { out, offset, _ in
        let from = source + base + offset
        let to = destination + out
        if step == 1 {
            to.update(from: from, count: inner)
        } else {
            for i in 0..<inner { to[i] = from[i * step] }
        }
    }
}
