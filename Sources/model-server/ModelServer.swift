import ArgumentParser
import Engine
import Dispatch
import FoundationEssentials
import Glibc
import InferenceProtocol
import ModelClientCommand
import Serving
import Transport
import Workers
import WireFormat

/// model-server: serves ONNX models from a TF Serving / Triton style model path over
/// KServe V1, TF Serving REST and Open Inference Protocol V2.
@main
struct ModelServer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model-server",
        abstract: "Serve ONNX models over KServe V1, TF Serving REST and Open Inference Protocol V2.")

    @Option(name: .customLong("rest_api_port"), help: "REST port (default 8501; 0 picks a free port).")
    var restPort: Int?

    @Option(name: .customLong("port"), help: "gRPC port (default 8500; 0 picks a free port). Both ports also take HTTP/2 (h2c) REST and gRPC.")
    var grpcPort: Int?

    @Option(name: .customLong("rest_api_host"), help: "Address to listen on.")
    var host: String = "0.0.0.0"

    @Option(name: .customLong("model_name"), help: "Name of the single model served from --model_base_path.")
    var modelName: String?

    @Option(name: .customLong("model_base_path"), help: "Directory of numbered versions: <base>/<version>/model.onnx.")
    var modelBasePath: String?

    @Option(name: .customLong("model_config_file"), help: "TF Serving model_config_list text file (several models, version policies, labels).")
    var modelConfigFile: String?

    @Option(name: .customLong("model_repository"), help: "Triton-style repository: <dir>/<model>/<version>/model.onnx, optional <dir>/<model>/config.pbtxt.")
    var modelRepository: String?

    @Option(name: .customLong("file_system_poll_wait_seconds"), help: "Seconds between scans for new and removed versions (0: scan once).")
    var pollSeconds: Int = 1

    @Flag(name: .customLong("enable_batching"), help: "Batch requests of models without their own dynamic_batching (TF Serving).")
    var enableBatching = false

    @Option(name: .customLong("batching_parameters_file"), help: "TF Serving BatchingParameters text file (with --enable_batching).")
    var batchingParametersFile: String?

    @Option(name: .customLong("max_body_bytes"), help: "Largest request body accepted (413 beyond).")
    var maxBodyBytes: Int = 64 * 1024 * 1024

    @Option(name: .customLong("grpc_max_message_bytes"), help: "Largest gRPC request message accepted (RESOURCE_EXHAUSTED beyond).")
    var maxMessageBytes: Int = 64 * 1024 * 1024

    @Option(name: .customLong("max_buffered_bytes"), help: "Request bodies and HTTP/2 answers held in memory at once over all connections of both ports; past it requests get 503 / RESOURCE_EXHAUSTED and new HTTP/2 streams REFUSED_STREAM, all to retry (default: 1 GiB, at least twice the largest body or message; 0: unbounded).")
    var maxBufferedBytes: Int?

    @Option(name: .customLong("max_connections"), help: "Connections served at once; more are closed on accept.")
    var maxConnections: Int = 10_000

    @Option(name: .customLong("idle_timeout_seconds"), help: "Seconds an idle keep-alive connection is kept.")
    var idleTimeout: Int = 60

    @Option(name: .customLong("request_timeout_seconds"), help: "Seconds a client has to send a whole request (408 after).")
    var requestTimeout: Int = 30

    @Option(name: .customLong("rest_api_timeout_in_ms"), help: "REST inference deadline in ms from when a request is queued (504 after; TF Serving's flag; 0: none).")
    var restTimeoutMilliseconds: Int = 0

    @Option(name: .customLong("drain_delay_seconds"), help: "On SIGTERM/SIGINT: seconds to keep accepting and serving with readiness false (for load balancers to notice) before draining; a second signal ends the wait.")
    var drainDelaySeconds: Int = 0

    @Option(name: .customLong("log_format"), help: "text, or json: one JSON object per line (time, level, message) for log collectors.")
    var logFormatOption: LogFormat = .text

    @Option(name: .customLong("shutdown_grace_seconds"), help: "On SIGTERM/SIGINT: seconds in-flight requests get to finish.")
    var graceSeconds: Int = 30

    @Option(name: .customLong("rest_api_num_threads"), help: "Event-loop threads (default: the CPUs this process may use).")
    var loopThreads: Int?

    @Option(name: .customLong("compute_threads"), help: "Inference threads (default: the CPUs this process may use).")
    var computeThreads: Int?

    func validate() throws {
        let modes = [modelBasePath != nil, modelConfigFile != nil, modelRepository != nil].filter { $0 }.count
        guard modes == 1 else { throw ValidationError("give exactly one of --model_base_path, --model_config_file, --model_repository") }
        if modelBasePath != nil && modelName == nil { throw ValidationError("--model_base_path needs --model_name") }
        if let maxBufferedBytes, maxBufferedBytes < 0 { throw ValidationError("--max_buffered_bytes must be >= 0 (0: unbounded), got \(maxBufferedBytes)") }
    }

    /// Started under the name model-client (a link to this binary, as the container image
    /// ships it: one static Swift runtime instead of two), run the client.
    static func main() {
        if CommandLine.arguments.first?.split(separator: "/").last == "model-client" {
            ModelClientCommand.main()
        }
        main(nil)
    }

    func run() throws {
        logFormat = logFormatOption
        BLASKernels.relaunchWithBestKernels()
        // Signals go to the main thread's sigwait; every thread started below inherits the mask.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        let sources: [ModelSource]
        var batchingDefaults: BatchingParameters?
        do {
            if enableBatching {
                batchingDefaults = try batchingParametersFile.map { try BatchingParameters.load(path: $0) } ?? BatchingParameters()
            }
            if let modelConfigFile { sources = try ModelSource.fromConfigFile(modelConfigFile) }
            else if let modelRepository { sources = try ModelSource.fromRepository(modelRepository) }
            else { sources = [ModelSource(name: modelName!, basePath: modelBasePath!)] }
        } catch {
            log("model-server: \(error)", level: .error)
            throw ExitCode(2)
        }

        // Thread plan: the only place threads are created and the BLAS thread count is set.
        let cpus = CPUBudget.available()
        BLAS.setThreadCount(1)
        let compute = ComputePool(workers: computeThreads ?? cpus)
        let control = ControlQueue()
        let metrics = Metrics()
        let repository = ModelRepository(sources: sources, repositoryDirectory: modelRepository, executor: compute, metrics: metrics,
                                         batchingDefaults: batchingDefaults) { level, message in log(message, level: level) }
        let core = ServerCore(repository: repository, executor: compute, metrics: metrics, control: { job in control.async(job) })
        let service = RESTService(core: core, inferenceTimeout: restTimeoutMilliseconds > 0 ? Double(restTimeoutMilliseconds) / 1000 : nil)

        var configuration = HTTPServerConfiguration()
        configuration.host = host
        configuration.port = restPort ?? 8501
        configuration.limits.maxBodyBytes = maxBodyBytes
        configuration.maxConnections = maxConnections
        configuration.idleTimeout = idleTimeout
        configuration.requestTimeout = requestTimeout
        // One budget for both ports.
        let largest = max(maxBodyBytes, maxMessageBytes)
        let budget = maxBufferedBytes.map { $0 > 0 ? $0 : Int.max } ?? max(1 << 30, largest > Int.max / 4 ? Int.max : 2 * largest)
        configuration.memoryBudget = MemoryBudget(limit: budget)
        let loops = try (0..<max(1, loopThreads ?? cpus)).map { try EventLoop(index: $0) }
        var grpcConfiguration = configuration
        grpcConfiguration.port = grpcPort ?? 8500
        grpcConfiguration.maxGRPCMessageBytes = maxMessageBytes
        configuration.maxGRPCMessageBytes = maxMessageBytes
        let restBridge = RESTBridge(service: service)
        let grpcBridge = GRPCBridge(service: GRPCService(core: core))
        var servers: [HTTPServer] = []
        for (name, settings) in [("REST", configuration), ("gRPC", grpcConfiguration)] {
            do {
                servers.append(try HTTPServer(configuration: settings, loops: loops, handler: restBridge, grpcHandler: grpcBridge))
            } catch {
                log("model-server: cannot listen for \(name) on \(host):\(settings.port): \(error)", level: .error)
                throw ExitCode(1)
            }
        }
        for loop in loops { Threads.start(name: "loop-\(loop.index)") { loop.run() } }
        for server in servers { server.start() }
        log("model-server: REST listening on \(host):\(servers[0].port), gRPC on \(host):\(servers[1].port) (\(loops.count) event loops, \(compute.workerCount) compute threads, BLAS kernels \(BLAS.coreName))")

        let pollSeconds = pollSeconds
        control.async { repository.poll() }
        Threads.start(name: "housekeeping") {
            var elapsed = 0
            while true {
                sleep(1)
                elapsed += 1
                if pollSeconds > 0 && elapsed % pollSeconds == 0 { control.async { repository.poll() } }
                // Bursts of large requests leave freed memory in malloc's per-thread arenas;
                // give it back so the resident size follows the load down again.
                if elapsed % 5 == 0 { Workers.releaseFreeMemory() }
            }
        }

        var received: Int32 = 0
        repeat { sigwait(&signals, &received) } while received == SIGPIPE
        core.beginShutdown()
        if drainDelaySeconds > 0 {
            // Readiness is false now; keep serving while endpoints controllers and load
            // balancers take the pod out of rotation, then drain.
            log("model-server: signal \(received): not ready; serving \(drainDelaySeconds) s more before draining")
            let end = Date().addingTimeInterval(Double(drainDelaySeconds))
            var second: Int32 = -1
            while true {
                let left = end.timeIntervalSinceNow
                if left <= 0 { break }
                var timeout = timespec(tv_sec: Int(left), tv_nsec: Int((left - left.rounded(.down)) * 1e9))
                second = sigtimedwait(&signals, nil, &timeout)
                if second == SIGPIPE || (second < 0 && errno == EINTR) { continue }  // the deadline stays
                break
            }
            if second > 0 { log("model-server: signal \(second): draining now") }
        }
        log("model-server: signal \(received): draining (up to \(graceSeconds) s)")
        let done = DispatchSemaphore(value: 0)
        for server in servers { server.shutdown(gracePeriod: graceSeconds) { done.signal() } }
        for _ in servers { done.wait() }
        compute.shutdown()
        log("model-server: stopped")
    }
}

/// How `log` writes: plain lines, or one JSON object per line (`time` RFC 3339 UTC with
/// milliseconds, `level`, `message`) for log collectors. Set once at start, before any thread.
nonisolated(unsafe) var logFormat = LogFormat.text

enum LogFormat: String, ExpressibleByArgument, CaseIterable { case text, json }

func log(_ message: String, level: LogLevel = .info) {
    var line: String
    switch logFormat {
    case .text:
        line = message
    case .json:
        var now = timeval()
        gettimeofday(&now, nil)
        var seconds = now.tv_sec, parts = tm()
        gmtime_r(&seconds, &parts)
        func digits(_ value: some BinaryInteger, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        let time = "\(digits(parts.tm_year + 1900, 4))-\(digits(parts.tm_mon + 1, 2))-\(digits(parts.tm_mday, 2))T"
            + "\(digits(parts.tm_hour, 2)):\(digits(parts.tm_min, 2)):\(digits(parts.tm_sec, 2)).\(digits(now.tv_usec / 1000, 3))Z"
        var writer = JSONWriter(reservingCapacity: message.utf8.count + 64)
        writer.beginObject()
        writer.key("time"); writer.value(time)
        writer.key("level"); writer.value(level.rawValue)
        writer.key("message"); writer.value(message)
        writer.endObject()
        line = String(decoding: writer.bytes, as: UTF8.self)
    }
    line += "\n"
    // One write(2) per line, so lines from different threads never interleave.
    _ = line.utf8CString.withUnsafeBufferPointer { write(STDERR_FILENO, $0.baseAddress, $0.count - 1) }
}

/// Joins Transport and the protocol layer: HTTP requests in, REST responses out.
struct RESTBridge: HTTPHandler {
    let service: RESTService

    func handle(_ request: HTTPRequest, responder: HTTPResponder) {
        let rest = RESTRequest(method: request.head.method, path: request.head.path,
                               headers: request.head.headers.map { ($0.name, $0.value) }, body: request.body)
        service.handle(rest) { response in
            responder.send(HTTPResponse(status: response.status, headers: HTTPHeaders(response.headers), body: response.body))
        }
    }

    func errorResponse(status: Int, message: String) -> HTTPResponse {
        let response = service.errorResponse(status: status, message: message)
        return HTTPResponse(status: response.status, headers: HTTPHeaders(response.headers), body: response.body)
    }

    /// Compressed bodies are inflated on a compute worker, not an event loop.
    func offload(_ work: @escaping @Sendable () -> Void) { service.offload(work) }
}


/// Joins Transport's gRPC calls and the protocol layer's gRPC service.
struct GRPCBridge: GRPCHandler {
    let service: GRPCService

    func handle(_ request: GRPCRequest, responder: GRPCResponder) {
        let cancellation = request.cancellation
        service.handle(path: request.path, message: request.message, deadline: request.deadline,
                       isCancelled: { cancellation.isCancelled }) { reply in
            responder.send(GRPCResponse(status: reply.status.rawValue, message: reply.message, payload: reply.payload))
        }
    }

    func isUnary(path: String) -> Bool { !GRPCService.streamingPaths.contains(path) }
}
