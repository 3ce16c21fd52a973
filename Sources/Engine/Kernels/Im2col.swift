/// Convolution geometry for one image, 2-D (1-D convolutions use height 1).
struct ConvGeometry: Sendable {
    var channels: Int          // input channels of one group
    var height: Int, width: Int
    var kernelH: Int, kernelW: Int
    var strideH: Int, strideW: Int
    var dilationH: Int, dilationW: Int
    var padTop: Int, padLeft: Int
    var outH: Int, outW: Int

    /// Rows of the im2col matrix: channels * kernelH * kernelW.
    var patchSize: Int { channels * kernelH * kernelW }
}

/// Writes the im2col matrix for output columns [columnStart, columnStart + columnCount):
/// cols[(c*kh + ky)*kw + kx, j] = x[c, oy*sh - padTop + ky*dh, ox*sw - padLeft + kx*dw] (0 outside),
/// where output column j + columnStart = oy*outW + ox.
/// x: (channels, height, width) f32; cols: (patchSize, columnCount) f32, row stride columnCount.
func im2col(_ g: ConvGeometry, x: UnsafePointer<Float>, cols: UnsafeMutablePointer<Float>, columnStart: Int, columnCount: Int) {
    let plane = g.height * g.width
    for c in 0..<g.channels {
        let xc = x + c * plane
        for ky in 0..<g.kernelH {
            for kx in 0..<g.kernelW {
                let row = cols + ((c * g.kernelH + ky) * g.kernelW + kx) * columnCount
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
    }
}
