import ArgumentParser
import Glibc
import WireFormat

/// model-client's entry point: the `model-client` executable, and `model-server` when it is
/// started under the name model-client (the container image ships one multi-call binary).
public enum ModelClientCommand {
    /// Parses `CommandLine.arguments` and runs; exits the process.
    public static func main() -> Never {
        ModelClient.main()
        Glibc.exit(0)
    }
}

/// Sends images or .npy tensors to a model on model-server (or any KServe V1 / TF Serving
/// REST / Open Inference Protocol V2 REST or gRPC server) and prints the top-k `label score`
/// lines.
///
/// Exit status: 0 success; 1 the server or the connection failed (refused, timed out, an
/// HTTP error status or a gRPC error status: its message is printed); 2 bad arguments or
/// input files.
struct ModelClient: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model-client",
        abstract: "Classify images or NumPy tensors with a model on a model server.",
        usage: """
            model-client --server <host:port> --model <name> <image> ... [<options>]
            model-client --server <host:port> --model <name> --input <name=file.npy> ... [<options>]
            """,
        discussion: """
            Prints, per image or batch row, the top-k classes as 'label score' lines (score \
            with 6 significant digits), with a '<name>:' line before each block when there \
            are several. A server-side classification ('classes' and 'scores' outputs, or \
            the V2 classification extension's 'score:index[:label]' strings) is printed as \
            the server ranked it; any other output is taken as scores [N, C] and ranked here.

            V1 sends {"instances": [{"b64": ...}]} for images, row-format instances for one \
            tensor and columnar {"inputs": {NAME: ...}} for several. V2 sends the binary \
            tensor extension: images as one BYTES tensor [N], .npy arrays with their dtype \
            and shape. gRPC calls the Open Inference Protocol's GRPCInferenceService \
            (ModelMetadata, ModelInfer) over HTTP/2 without TLS, with the same tensors as \
            raw_input_contents; give the server's gRPC port.

            Exit status: 0 success; 1 the connection or the server failed (the server's error \
            message is printed: 'error: 404 <message>' for REST, 'error: gRPC NOT_FOUND: \
            <message>' for gRPC); 2 bad arguments or unreadable inputs.
            """)

    enum WireProtocol: String, ExpressibleByArgument, CaseIterable {
        case v1, v2, grpc
        case tfGRPC = "tf-grpc"
    }

    @Option(help: ArgumentHelp("The server's address, HOST:PORT ('http://' is accepted): its REST port, or its gRPC port with --protocol grpc.", valueName: "host:port"))
    var server: String

    @Option(help: ArgumentHelp("The model's name.", valueName: "name"))
    var model: String

    @Option(name: .customLong("model-version"), help: ArgumentHelp("A version of the model (default: the server's choice).", valueName: "version"))
    var modelVersion: String?

    @Option(name: .customLong("protocol"),
            help: "v1 (KServe V1 / TF Serving :predict), v2 (Open Inference Protocol /infer), grpc (Open Inference Protocol) or tf-grpc (TF Serving's PredictionService/Predict).")
    var wireProtocol: WireProtocol = .v2

    @Option(help: ArgumentHelp("tf-grpc: the signature to call (TF Serving's model_spec.signature_name; default serving_default).", valueName: "name"))
    var signature: String = ""

    @Argument(help: ArgumentHelp("Encoded images (JPEG) to classify, one instance each.", valueName: "image"))
    var images: [String] = []

    @Option(name: .customLong("input"),
            help: ArgumentHelp("A tensor from a NumPy file (float32/64, int64/32, uint8, bool; little endian, C order). FILE.npy alone is the model's first input. Repeat for several inputs.",
                               valueName: "name=file.npy"))
    var inputs: [String] = []

    @Option(name: .customLong("input-name"),
            help: ArgumentHelp("The input the images go to (V2 and gRPC default: the model's first input, from its metadata; V1 default: unnamed instances).", valueName: "name"))
    var inputName: String?

    @Option(name: .customLong("output-name"), help: ArgumentHelp("The output to rank (default: the first output of the response).", valueName: "name"))
    var outputName: String?

    @Option(name: .customLong("top-k"), help: ArgumentHelp("Classes to print per instance.", valueName: "k"))
    var topK: Int = 5

    @Option(help: ArgumentHelp("A labels file: line i names class i (default: class indices).", valueName: "file"))
    var labels: String?

    @Flag(help: "Apply softmax to the output before ranking it (client-side ranking only).")
    var softmax = false

    @Flag(name: .customLong("server-topk"),
          help: "Ask the server to rank (V2 or gRPC output parameter 'classification': K) instead of ranking here.")
    var serverTopK = false

    @Option(name: .customLong("batch-size"), help: ArgumentHelp("Instances per request (default: all in one request).", valueName: "n"))
    var batchSize: Int?

    @Option(help: ArgumentHelp("Seconds each request may take, connecting included.", valueName: "seconds"))
    var timeout: Double = 30

    @Flag(help: "Print a summary of every request and response to stderr.")
    var verbose = false

    /// A failure reported as `error: <message>` with exit status `code`.
    struct Failure: Error {
        let code: Int32
        let message: String
    }

    /// Like ParsableCommand's main, except that bad arguments exit 2 (not 64) and `Failure`s
    /// print `error: <message>`.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let failure as Failure {
            writeStderr("error: \(failure.message)")
            Glibc.exit(failure.code)
        } catch {
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success {
                if !message.isEmpty { print(message) }
                Glibc.exit(0)
            }
            if !message.isEmpty { writeStderr(message) }
            Glibc.exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }

    func validate() throws {
        _ = try Self.parseServer(server)
        if images.isEmpty && inputs.isEmpty { throw ValidationError("Give images to classify or --input NAME=FILE.npy tensors.") }
        if !images.isEmpty && !inputs.isEmpty { throw ValidationError("Give images or --input tensors, not both.") }
        let names = try inputs.map(Self.splitInput).map(\.name)
        if names.contains(nil) && names.count > 1 { throw ValidationError("With several --input tensors, name each: --input NAME=FILE.npy.") }
        let given = names.compactMap { $0 }
        if Set(given).count != given.count { throw ValidationError("An input is given twice.") }
        if topK < 1 { throw ValidationError("--top-k must be at least 1.") }
        if let batchSize, batchSize < 1 { throw ValidationError("--batch-size must be at least 1.") }
        if !(timeout > 0 && timeout.isFinite) { throw ValidationError("--timeout must be a positive number of seconds.") }
        if serverTopK && wireProtocol == .v1 {
            throw ValidationError("--server-topk needs --protocol v2 or grpc (V1 servers that classify return 'classes' and 'scores' by themselves).")
        }
        if serverTopK && wireProtocol == .tfGRPC {
            throw ValidationError("--server-topk needs --protocol v2 or grpc (TF Serving signatures that classify return 'classes' and 'scores' by themselves).")
        }
        if !signature.isEmpty && wireProtocol != .tfGRPC { throw ValidationError("--signature needs --protocol tf-grpc.") }
    }

    /// (host, port) from HOST:PORT, [IPV6]:PORT or http://HOST:PORT[/].
    static func parseServer(_ text: String) throws -> (host: String, port: Int) {
        var rest = Substring(text)
        if rest.lowercased().hasPrefix("https://") { throw ValidationError("--server: TLS is not supported; give the server's plain HTTP port.") }
        if rest.lowercased().hasPrefix("http://") { rest = rest.dropFirst(7) }
        while rest.hasSuffix("/") { rest = rest.dropLast() }
        let host: Substring, port: Substring
        if rest.hasPrefix("["), let close = rest.firstIndex(of: "]"), rest[rest.index(after: close)...].hasPrefix(":") {
            host = rest[rest.index(after: rest.startIndex)..<close]
            port = rest[rest.index(close, offsetBy: 2)...]
        } else if let colon = rest.lastIndex(of: ":"), !rest[..<colon].contains(":") {
            host = rest[..<colon]
            port = rest[rest.index(after: colon)...]
        } else {
            throw ValidationError("--server must be HOST:PORT, not '\(text)'.")
        }
        guard !host.isEmpty, let number = Int(port), (1...65535).contains(number) else {
            throw ValidationError("--server must be HOST:PORT with a port from 1 to 65535, not '\(text)'.")
        }
        return (String(host), number)
    }

    /// NAME=FILE.npy -> (NAME, FILE.npy); FILE.npy -> (nil, FILE.npy).
    static func splitInput(_ text: String) throws -> (name: String?, path: String) {
        guard let equals = text.firstIndex(of: "=") else { return (nil, text) }
        let name = String(text[..<equals]), path = String(text[text.index(after: equals)...])
        if name.isEmpty || path.isEmpty { throw ValidationError("--input must be NAME=FILE.npy, not '\(text)'.") }
        return (name, path)
    }

    mutating func run() throws {
        let (host, port) = try Self.parseServer(server)
        let labelNames = try labels.map(Self.readLabels) ?? []
        let batches = try makeBatches()

        let endpoint = ModelEndpoint(http: HTTPClient(host: host, port: port, timeout: timeout),
                                     model: model, version: modelVersion, verbose: verbose)
        let grpc = GRPCEndpoint(client: GRPCClient(host: host, port: port, timeout: timeout),
                                model: model, version: modelVersion, verbose: verbose)
        let tfServing = TFServingEndpoint(client: grpc.client, model: model, version: modelVersion, signature: signature, verbose: verbose)
        do {
            // V2 and gRPC name what the command line leaves open from the model's metadata.
            var defaultInput = inputName ?? "", classifyOutput = outputName
            let unnamedTensor = inputs.contains { !$0.contains("=") }
            if wireProtocol == .tfGRPC && inputName == nil && (!images.isEmpty || unnamedTensor) {
                guard let first = try tfServing.inputNames().first else { throw ResponseError(description: "the signature lists no inputs") }
                defaultInput = first
            } else if wireProtocol != .v1 && ((inputName == nil && (!images.isEmpty || unnamedTensor)) || (serverTopK && outputName == nil)) {
                let metadata = try wireProtocol == .grpc ? grpc.metadata() : endpoint.v2Metadata()
                if inputName == nil {
                    guard let first = metadata.inputs.first else { throw ResponseError(description: "the model metadata lists no inputs") }
                    defaultInput = first
                }
                if classifyOutput == nil {
                    guard let first = metadata.outputs.first else { throw ResponseError(description: "the model metadata lists no outputs") }
                    classifyOutput = first
                }
            }
            let total = batches.reduce(0) { $0 + $1.names.count }
            for (payload, names) in batches {
                let rows: [RowResult]
                switch wireProtocol {
                case .v1:
                    rows = try endpoint.predictV1(payload, imageInputName: inputName, outputName: outputName)
                case .v2:
                    rows = try endpoint.inferV2(payload, defaultInputName: defaultInput,
                                                classify: serverTopK ? (classifyOutput ?? "", topK) : nil, outputName: outputName)
                case .grpc:
                    rows = try grpc.infer(payload, defaultInputName: defaultInput,
                                          classify: serverTopK ? (classifyOutput ?? "", topK) : nil, outputName: outputName)
                case .tfGRPC:
                    rows = try tfServing.predict(payload, defaultInputName: defaultInput, outputName: outputName)
                }
                for (index, row) in rows.enumerated() {
                    let name = index < names.count && rows.count == names.count ? names[index] : "\(names.first ?? "row")[\(index)]"
                    printRow(row, header: total > 1 || rows.count > 1 ? name : nil, labels: labelNames)
                }
            }
        } catch let error as ServerError {
            throw Failure(code: 1, message: error.description)
        } catch let error as HTTPClientError {
            throw Failure(code: 1, message: error.description)
        } catch let error as ResponseError {
            throw Failure(code: 1, message: error.description)
        } catch let error as GRPCStatusError {
            throw Failure(code: 1, message: error.description)
        }
    }

    /// The requests to send, each with its instances' display names: images (or the rows of
    /// the tensors' first dimension) in groups of --batch-size.
    private func makeBatches() throws -> [(payload: Payload, names: [String])] {
        if !images.isEmpty {
            var loaded: [(path: String, bytes: [UInt8])] = []
            for path in images {
                do { loaded.append((path, try FileBytes.contents(path))) } catch { throw Failure(code: 2, message: error.description) }
            }
            let size = batchSize ?? loaded.count
            return stride(from: 0, to: loaded.count, by: size).map { start in
                let group = Array(loaded[start..<min(start + size, loaded.count)])
                return (.images(group), group.map(\.path))
            }
        }
        var tensors: [(name: String?, array: NPYArray)] = []
        for input in inputs {
            let (name, path) = try Self.splitInput(input)
            do { tensors.append((name, try NPYArray(path: path))) } catch { throw Failure(code: 2, message: error.description) }
        }
        let file = try Self.splitInput(inputs[0]).path
        let rows = tensors[0].array.shape.first ?? 1
        let names = rows == 1 ? [file] : (0..<rows).map { "\(file)[\($0)]" }
        guard let batchSize, batchSize < rows else { return [(.tensors(tensors), names)] }
        guard tensors.allSatisfy({ $0.array.shape.first == rows }) else {
            throw Failure(code: 2, message: "--batch-size splits the first dimension, which must be the same for every --input")
        }
        return stride(from: 0, to: rows, by: batchSize).map { start in
            let range = start..<min(start + batchSize, rows)
            return (.tensors(tensors.map { ($0.name, $0.array.rows(range)) }), Array(names[range]))
        }
    }

    private static func readLabels(_ path: String) throws -> [String] {
        let bytes: [UInt8]
        do { bytes = try FileBytes.contents(path) } catch { throw Failure(code: 2, message: error.description) }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.hasSuffix("\r") ? String($0.dropLast()) : String($0)
        }
    }

    /// `header:` (when given), then up to --top-k `label score` lines, best first.
    private func printRow(_ row: RowResult, header: String?, labels: [String]) {
        if let header { print("\(header):") }
        let entries: [(label: String?, index: Int?, score: Double)]
        switch row {
        case .ranked(let ranked):
            entries = ranked
        case .scores(let raw):
            let scores = softmax ? Self.softmax(raw) : raw
            entries = stableSortedDescending(scores.enumerated().map { (nil, $0.offset, $0.element) })
        }
        for entry in entries.prefix(topK) {
            let label = entry.label ?? entry.index.map { index in
                index >= 0 && index < labels.count && !labels[index].isEmpty ? labels[index] : String(index)
            } ?? "?"
            print("\(label) \(formatted(entry.score))")
        }
    }

    static func softmax(_ values: [Double]) -> [Double] {
        guard let top = values.filter({ !$0.isNaN }).max(), top.isFinite else { return values }
        let exps = values.map { exp($0 - top) }
        let sum = exps.reduce(0, +)
        return exps.map { $0 / sum }
    }
}
