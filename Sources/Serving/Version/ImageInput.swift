import ImageCodec

/// A model input fed from encoded images: JPEG bytes arrive as a BYTES tensor (V2), `{"b64"}`
/// instances (V1), or a raw `image/jpeg` body, and are decoded and preprocessed into the
/// model's float tensor on a compute worker.
///
/// Configured with config.pbtxt `parameters`: `image_input` (the input's name),
/// `image_resize` (`stretch`, `shorter_side:N`, `central_crop:F`, `letterbox`),
/// `image_scale` (default 1/255), `image_mean` and `image_std` (one value or one per
/// channel, comma-separated), `image_channel_order` (`rgb` or `bgr`), `image_max_pixels`.
/// Size, channels and layout come from the input's shape: [-1, C, H, W] (C = 1 or 3) is NCHW,
/// otherwise [-1, H, W, C] is NHWC.
public struct ImageInput: Sendable {
    public let name: String
    public let preprocessing: ImagePreprocessing

    /// Nil when the model declares no image input. Throws for an inconsistent configuration.
    static func from(parameters: [String: String], inputs: [LoadedVersion.TensorMetadata]) throws(ServingError) -> ImageInput? {
        guard let name = parameters["image_input"] else { return nil }
        guard let input = inputs.first(where: { $0.name == name }) else {
            throw .invalidInput("image_input '\(name)' is not an input of the model (\(inputs.map(\.name).joined(separator: ", ")))")
        }
        guard input.datatype == .fp32, input.shape.count == 4, input.shape[0] == -1 else {
            throw .invalidInput("image_input '\(name)' must be FP32 with shape [-1, C, H, W] or [-1, H, W, C], not \(input.datatype.rawValue) \(input.shape)")
        }
        let planar = input.shape[1] == 1 || input.shape[1] == 3
        let (channels, height, width) = planar ? (input.shape[1], input.shape[2], input.shape[3]) : (input.shape[3], input.shape[1], input.shape[2])
        guard channels == 1 || channels == 3 else { throw .invalidInput("image_input '\(name)' must have 1 or 3 channels, shape \(input.shape)") }
        func floats(_ key: String, default value: [Float]) throws(ServingError) -> [Float] {
            guard let text = parameters[key] else { return value }
            let values = text.split(separator: ",").map { Float($0.filter { $0 != " " }) }
            guard !values.isEmpty, values.allSatisfy({ $0 != nil }), values.count == 1 || values.count == channels else {
                throw .invalidInput("parameter \(key) '\(text)' must be 1 or \(channels) comma-separated numbers")
            }
            return values.map { $0! }
        }
        var resize = ResizeMode.stretch
        if let text = parameters["image_resize"] {
            let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
            switch (parts.first, parts.count > 1 ? parts[1] : nil) {
            case ("stretch", nil): resize = .stretch
            case ("letterbox", nil): resize = .letterbox(fill: 0)
            case ("shorter_side", let side?) where Int(side) != nil: resize = .shorterSide(Int(side)!)
            case ("central_crop", let fraction?) where Double(fraction) != nil: resize = .centerCropFraction(Double(fraction)!)
            default: throw .invalidInput("image_resize '\(text)' must be stretch, letterbox, shorter_side:N or central_crop:F")
            }
        }
        let scale = try floats("image_scale", default: [1.0 / 255.0])
        var preprocessing = ImagePreprocessing(width: width, height: height, channels: channels,
                                               channelOrder: parameters["image_channel_order"] == "bgr" ? .bgr : .rgb,
                                               layout: planar ? .nchw : .nhwc, resize: resize, scale: scale[0],
                                               mean: try floats("image_mean", default: [0]), std: try floats("image_std", default: [1]))
        if let limit = parameters["image_max_pixels"].flatMap({ Int($0) }) { preprocessing.maxPixels = limit }
        do { try preprocessing.validate() } catch { throw .invalidInput("image preprocessing of '\(name)': \(error.message)") }
        return ImageInput(name: name, preprocessing: preprocessing)
    }

    /// Decodes every element of a BYTES tensor (4-byte little-endian length + JPEG bytes each)
    /// into one FP32 batch [N, ...] in the model's layout.
    func decode(_ tensor: InferTensor, shape modelShape: [Int], with decoders: ImageDecoderPool) throws(ServingError) -> InferTensor {
        let bytes = tensor.data
        guard let images = BytesElements.ranges(bytes) else {
            throw .invalidInput("BYTES data of '\(name)' ends inside an element or its length")
        }
        guard !images.isEmpty else { throw .invalidInput("'\(name)' holds no image") }
        guard images.count == tensor.elementCount else {
            throw .invalidInput("'\(name)' holds \(images.count) images, its shape \(tensor.shape) needs \(tensor.elementCount)")
        }
        let perImage = preprocessing.elementCount
        var output = [UInt8](repeating: 0, count: images.count * perImage * 4)
        var failure: ServingError?
        bytes.withUnsafeBytes { source in
            output.withUnsafeMutableBytes { destination in
                let floats = destination.bindMemory(to: Float.self)
                for (index, range) in images.enumerated() {
                    do throws(ImageError) {
                        try decoders.decode(UnsafeRawBufferPointer(rebasing: source[range]), preprocessing,
                                            into: UnsafeMutableBufferPointer(rebasing: floats[index * perImage ..< (index + 1) * perImage]))
                    } catch {
                        let prefix = images.count > 1 ? "image \(index) of '\(name)': " : "'\(name)': "
                        failure = error.isClientError ? .invalidInput(prefix + error.message) : .internalError(prefix + error.message)
                        return
                    }
                }
            }
        }
        if let failure { throw failure }
        return InferTensor(name: name, datatype: .fp32, shape: [images.count] + modelShape.dropFirst(), data: output)
    }
}

extension LoadedVersion {
    /// Replaces an encoded-image input of `request` by its decoded tensor. Runs on a compute
    /// worker (decoding is the expensive part of an image request). No-op for other models.
    public func decodeImages(_ request: inout InferRequest) throws(ServingError) {
        try expandSignatureInputs(&request)
        guard let image = imageInput else { return }
        guard let index = request.inputs.firstIndex(where: { $0.name == image.name }), request.inputs[index].datatype == .bytes else { return }
        let shape = model.inputs.first { $0.name == image.name }!.shape
        request.inputs[index] = try image.decode(request.inputs[index], shape: shape, with: imageDecoders)
    }

    /// Whether `request` carries encoded images to decode first.
    public func needsDecoding(_ request: InferRequest) -> Bool {
        if let signature, signature.feeds.values.contains(where: { if case .tensor = $0 { return false } else { return true } }) { return true }
        guard let image = imageInput else { return false }
        return request.inputs.contains { $0.name == image.name && $0.datatype == .bytes }
    }
}

