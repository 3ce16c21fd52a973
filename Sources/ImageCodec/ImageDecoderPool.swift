import Locks

/// A thread-safe front for `ImageDecoder`: each call borrows an idle decoder (creating one
/// when none is idle) and returns it afterwards, so there are at most as many decoders as
/// concurrent callers. Use it from any number of threads; each decode itself runs on the
/// calling thread.
public final class ImageDecoderPool: @unchecked Sendable {
    /// Idle decoders; guarded by `lock` (a pthread mutex, so ThreadSanitizer sees the hand-over).
    private let lock = Lock()
    private var idle: [Borrowed] = []
    private let maxIdle: Int

    /// `maxIdle` bounds the decoders (and their scratch memory) kept between calls.
    public init(maxIdle: Int = 64) {
        self.maxIdle = maxIdle
    }

    @discardableResult
    public func decode(
        _ jpeg: UnsafeRawBufferPointer, _ preprocessing: ImagePreprocessing,
        into output: UnsafeMutableBufferPointer<Float>
    ) throws(ImageError) -> ImageInfo {
        let borrowed = try take()
        defer { giveBack(borrowed) }
        return try borrowed.decoder.decode(jpeg, preprocessing, into: output)
    }

    @discardableResult
    public func decode(
        _ jpeg: UnsafeRawBufferPointer, _ preprocessing: ImagePreprocessing,
        into output: UnsafeMutableBufferPointer<UInt8>
    ) throws(ImageError) -> ImageInfo {
        let borrowed = try take()
        defer { giveBack(borrowed) }
        return try borrowed.decoder.decode(jpeg, preprocessing, into: output)
    }

    private func take() throws(ImageError) -> Borrowed {
        if let decoder = lock.withLock({ idle.popLast() }) { return decoder }
        return Borrowed(decoder: try ImageDecoder())
    }

    private func giveBack(_ borrowed: Borrowed) {
        lock.withLock {
            if idle.count < maxIdle { idle.append(borrowed) }
        }
    }
}

/// A decoder moving between threads through the pool. Safe: it is used only by the one
/// thread that took it out of the mutex-protected list, until that thread puts it back.
private struct Borrowed: @unchecked Sendable {
    let decoder: ImageDecoder
}
