import TensorFlowProto

/// One signature of a SavedModel as the server runs it: an engine `Model` for the numeric
/// network, plus the stages TF graphs do around it that the server runs itself (JPEG
/// decoding and preprocessing of string inputs, tf.Example parsing, top-k with a label
/// table). Immutable; shareable across threads.
public struct SavedModelSignature: Sendable {
    /// A signature input or output as the SignatureDef declares it.
    public struct TensorSpec: Sendable, Equatable {
        /// The signature's alias ("images", "scores").
        public let alias: String
        /// The graph tensor ("ParseExample/ParseExample:0").
        public let tensorName: String
        public let dtype: Tensorflow_DataType
        /// nil: unknown rank; -1: unknown size.
        public let shape: [Int]?
    }

    /// TF graph preprocessing of one JPEG string (a `map_fn` body), in TF's float32 order.
    public struct ImageSteps: Sendable, Equatable {
        public enum Arithmetic: Sendable, Equatable { case add(Float), sub(Float), mul(Float), div(Float) }
        /// 3 (RGB) or 1 (grayscale).
        public var channels: Int
        /// dct_method "" / INTEGER_FAST (libjpeg's fast integer IDCT) rather than INTEGER_ACCURATE.
        public var fastDCT: Bool
        public var beforeResize: [Arithmetic]
        public var centralCropFraction: Double?
        public var height: Int
        public var width: Int
        public var halfPixelCenters: Bool
        public var afterResize: [Arithmetic]
        /// The graph tensor ("node:index") the decoded batch stands for (the map_fn result).
        public var networkTensor: String
    }

    /// How a signature input reaches the network.
    public enum Feed: Sendable {
        /// The tensor is the engine model input `input`.
        case tensor(input: String)
        /// DT_STRING JPEG bytes, one per batch row, decoded into the model input `input`
        /// (NHWC float32).
        case images(input: String, ImageSteps)
        /// Serialized tf.Example records; each dense feature feeds the way its `Feed` says.
        case examples([ExampleFeature])
    }

    public struct ExampleFeature: Sendable {
        public let key: String
        public let dtype: Tensorflow_DataType
        /// Per-example shape of the dense feature.
        public let shape: [Int]
        /// Used when an example lacks the feature (nil: required).
        public let defaultValue: [UInt8]?
        public let feed: Feed
    }

    /// Where a signature output comes from.
    public enum Fetch: Sendable {
        /// The engine model output `output`.
        case tensor(output: String)
        /// TopKV2 of the model output `output`: its values, its indices (int32 in TF), or the
        /// indices looked up in a label table (missing keys give `missing`).
        case topKValues(output: String, k: Int)
        case topKIndices(output: String, k: Int)
        case topKLabels(output: String, k: Int, labels: [String], missing: String)
    }

    public let name: String
    /// "tensorflow/serving/predict", ".../classify" or ".../regress".
    public let methodName: String
    public let inputs: [TensorSpec]
    public let outputs: [TensorSpec]
    public let model: Model
    /// By input alias.
    public let feeds: [String: Feed]
    /// By output alias.
    public let fetches: [String: Fetch]
    /// Graph tensors added on request (`SavedModel(extraFetches:)`) -> engine output name.
    public var extraOutputs: [String: String] = [:]
}
