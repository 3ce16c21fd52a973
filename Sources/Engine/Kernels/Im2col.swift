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
/// cols[(c*kh + ky)*kw + kx, j] = x[c, oy*sh - padTop + ky*dh, ox*sw - padLeft + kx*dw] (0 outside),
/// where output column j + columnStart = oy*outW + ox.
/// x: (channels, height, width) f32; cols: (patchSize, columnCount) f32, row stride columnCount.
/// Only patch rows in `rows` are written (all by default), so workers can split one matrix.
func im2col(_ g: ConvGeometry, x: UnsafePointer<Float>, cols: UnsafeMutablePointer<Float>, columnStart: Int, columnCount: Int,
            rows: Range<Int>? = nil) {
    if !g.isPlanar {
        im2colVolume(g, x: x, cols: cols, columnStart: columnStart, columnCount: columnCount, rows: rows)
        return
    }
    let plane = g.height * g.width
    for r in rows ?? 0..<g.patchSize {
                let c = r / (g.kernelH * g.kernelW), ky = (r / g.kernelW) % g.kernelH, kx = r % g.kernelW
                let xc = x + c * plane
                let row = cols + r * columnCount
                var j = 0
                var oy = columnStart / g.outW
                var ox = columnStart % g.outW
                while j < columnCount {
                    let run = min(g.outW - ox, columnCount - j)
                    let iy = oy * g.strideH - g.padTop + ky * g.dilationH
                    let destination = row + j
                    if iy < 0 || iy >= g.height {
                        destination.update(repeating: 0, count: run)
                    } else {
                        let xrow = xc + iy * g.width
                        let offset = kx * g.dilationW - g.padLeft
                        if g.strideW == 1 {
                            // ix = ox + offset: zero the columns left/right of the image, copy the middle.
                            let first = max(0, min(run, -(ox + offset)))
                            let last = max(first, min(run, g.width - (ox + offset)))
                            if first > 0 { destination.update(repeating: 0, count: first) }
                            if last > first { (destination + first).update(from: xrow + ox + offset + first, count: last - first) }
                            if run > last { (destination + last).update(repeating: 0, count: run - last) }
                        } else {
                            for t in 0..<run {
                                let ix = (ox + t) * g.strideW + offset
                                destination[t] = ix >= 0 && ix < g.width ? xrow[ix] : 0
                            }
                        }
                    }
                    j += run
                    ox = 0
                    oy += 1
                }
    }
}
