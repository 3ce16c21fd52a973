/// Convolution geometry for one image of one group: 3-D in general; 2-D convolutions have
/// depth 1 (and 1-D height 1), which the fast paths below expect.
struct ConvGeometry: Sendable {
    var channels: Int          // input channels of one group
    var depth: Int = 1, height: Int, width: Int
    var kernelD: Int = 1, kernelH: Int, kernelW: Int
    var strideD: Int = 1, strideH: Int, strideW: Int
    var dilationD: Int = 1, dilationH: Int, dilationW: Int
    var padFront: Int = 0, padTop: Int, padLeft: Int
    var outD: Int = 1, outH: Int, outW: Int

    /// Rows of the im2col matrix: channels * kernelD * kernelH * kernelW.
    var patchSize: Int { channels * kernelD * kernelH * kernelW }
    var inputPlane: Int { depth * height * width }
    var outputPlane: Int { outD * outH * outW }
    var isPlanar: Bool { depth == 1 && kernelD == 1 && outD == 1 }
    /// A 1x1 convolution without stride or padding: the input itself is the im2col matrix.
    var isPointwise: Bool {
        kernelD == 1 && kernelH == 1 && kernelW == 1 && strideD == 1 && strideH == 1 && strideW == 1
            && padFront == 0 && padTop == 0 && padLeft == 0 && outD == depth && outH == height && outW == width
    }

    /// Copies `channels` of one planar image `x` (C, height, width) into `buffer`, planes of
    /// `sourceHeight` x `sourceWidth`: input row r, column q at row r + padTop, column
    /// q + padLeft; zero elsewhere (input beyond the buffer is dropped).
    func copyZeroBordered(_ x: UnsafePointer<Float>, into buffer: UnsafeMutablePointer<Float>, sourceHeight: Int,
                          sourceWidth: Int, channels range: Range<Int>) {
        let rows = max(0, min(height, sourceHeight - padTop)), columns = max(0, min(width, sourceWidth - padLeft))
        let plane = sourceHeight * sourceWidth
        for c in range {
            let target = buffer + c * plane, input = x + c * inputPlane
            target.update(repeating: 0, count: padTop * sourceWidth)
            for row in 0..<rows {
                let line = target + (padTop + row) * sourceWidth
                line.update(repeating: 0, count: padLeft)
                (line + padLeft).update(from: input + row * width, count: columns)
                let tail = sourceWidth - padLeft - columns
                if tail > 0 { (line + padLeft + columns).update(repeating: 0, count: tail) }
            }
            let below = sourceHeight - padTop - rows
            if below > 0 { (target + (padTop + rows) * sourceWidth).update(repeating: 0, count: below * sourceWidth) }
        }
    }
}

/// im2col for 3-D geometry, element by element (used only for volumetric convolutions).
func im2colVolume(_ g: ConvGeometry, x: UnsafePointer<Float>, cols: UnsafeMutablePointer<Float>, columnStart: Int, columnCount: Int,
                  rows: Range<Int>? = nil) {
    let kernelVolume = g.kernelD * g.kernelH * g.kernelW
    for r in rows ?? 0..<g.patchSize {
        let c = r / kernelVolume, kd = (r / (g.kernelH * g.kernelW)) % g.kernelD
        let ky = (r / g.kernelW) % g.kernelH, kx = r % g.kernelW
        let xc = x + c * g.inputPlane, row = cols + r * columnCount
        for j in 0..<columnCount {
            let column = columnStart + j
            let od = column / (g.outH * g.outW), oy = (column / g.outW) % g.outH, ox = column % g.outW
            let iz = od * g.strideD - g.padFront + kd * g.dilationD
            let iy = oy * g.strideH - g.padTop + ky * g.dilationH
            let ix = ox * g.strideW - g.padLeft + kx * g.dilationW
            let inside = iz >= 0 && iz < g.depth && iy >= 0 && iy < g.height && ix >= 0 && ix < g.width
            row[j] = inside ? xc[(iz * g.height + iy) * g.width + ix] : 0
        }
    }
}

/// Writes the im2col matrix for output columns [columnStart, columnStart + columnCount):
/// element (r, j) = x[c, oy*sh - padTop + ky*dh, ox*sw - padLeft + kx*dw] (0 outside the image)
/// with r = (c*kh + ky)*kw + kx and output column j + columnStart = oy*outW + ox.
/// x: (channels, height, width) f32. `cols`: row-major (patchSize, columnCount) with row stride
/// `rowStride` (default columnCount).
/// Only patch rows in `rows` are written (all by default), so workers can split one matrix.
func im2col(_ g: ConvGeometry, x: UnsafePointer<Float>, cols: UnsafeMutablePointer<Float>, columnStart: Int, columnCount: Int,
            rows: Range<Int>? = nil, rowStride: Int? = nil) {
    if !g.isPlanar {
        precondition(rowStride == nil || rowStride == columnCount, "a row stride is planar only")
        im2colVolume(g, x: x, cols: cols, columnStart: columnStart, columnCount: columnCount, rows: rows)
        return
    }
    let patch = g.patchSize, plane = g.height * g.width
    let rows = rows ?? 0..<patch
    if rows.isEmpty || columnCount == 0 { return }
    let rowStride = rowStride ?? columnCount

    /// A run of output columns within one output row.
    struct Segment { var destination: Int; var oy: Int; var ox: Int; var length: Int }
    // Cut the column range into segments once; the loop over patch rows then does no division.
    withUnsafeTemporaryAllocation(of: Segment.self, capacity: columnCount / max(g.outW, 1) + 2) { segments in
        var count = 0
        var j = 0, oy = columnStart / g.outW, ox = columnStart % g.outW
        while j < columnCount {
            let length = min(g.outW - ox, columnCount - j)
            segments[count] = Segment(destination: j, oy: oy, ox: ox, length: length)
            count += 1
            j += length
            ox += length
            if ox == g.outW { ox = 0; oy += 1 }
        }
        let kernelArea = g.kernelH * g.kernelW
        var c = rows.lowerBound / kernelArea, ky = (rows.lowerBound / g.kernelW) % g.kernelH, kx = rows.lowerBound % g.kernelW
        for r in rows {
            let xc = x + c * plane
            let columnOffset = kx * g.dilationW - g.padLeft, rowOffset = ky * g.dilationH - g.padTop
            let destinationRow = cols + r * rowStride
            for index in 0..<count {
                let segment = segments[index]
                let destination = destinationRow + segment.destination
                let run = segment.length
                let iy = segment.oy * g.strideH + rowOffset
                if iy < 0 || iy >= g.height {
                    for t in 0..<run { destination[t] = 0 }
                    continue
                }
                let xrow = xc + iy * g.width
                if g.strideW == 1 {
                    // ix = ox + t + columnOffset: zeros left and right of the image, a copy between.
                    let start = segment.ox + columnOffset
                    let first = max(0, min(run, -start))
                    let last = max(first, min(run, g.width - start))
                    for t in 0..<first { destination[t] = 0 }
                    let source = xrow + start
                    for t in first..<last { destination[t] = source[t] }
                    for t in last..<run { destination[t] = 0 }
                } else {
                    var ix = segment.ox * g.strideW + columnOffset
                    for t in 0..<run {
                        destination[t] = ix >= 0 && ix < g.width ? xrow[ix] : 0
                        ix += g.strideW
                    }
                }
            }
            kx += 1
            if kx == g.kernelW { kx = 0; ky += 1; if ky == g.kernelH { ky = 0; c += 1 } }
        }
    }
}
