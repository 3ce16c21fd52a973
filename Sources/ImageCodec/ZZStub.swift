// TEMPORARY
public struct TensorFlowImageSteps: Sendable, Equatable {
    public enum Arithmetic: Sendable, Equatable { case add(Float), sub(Float), mul(Float), div(Float) }
    public init(channels: Int, fastDCT: Bool = true, beforeResize: [Arithmetic] = [], centralCropFraction: Double? = nil,
                height: Int, width: Int, halfPixelCenters: Bool, afterResize: [Arithmetic] = []) {}
}
extension ImagePreprocessing { public var tensorflow: TensorFlowImageSteps? { get { nil } set {} } }
