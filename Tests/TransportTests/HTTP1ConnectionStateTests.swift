import Testing
@testable import Transport

// MARK: Harness

/// Drives an `HTTP1ConnectionState` as `HTTPConnection` does, with a simulated socket: the
/// peer reads what `accepting` lets through (nil: everything), requests given to the handler
/// wait in `dispatched` until the test answers them.
fileprivate struct Peer {
    var state: HTTP1ConnectionState
    var now = 0.0
    /// Bytes the socket accepts before it reports EAGAIN (nil: unlimited).
    var accepting: Int?
    var received: [UInt8] = []
    var dispatched: [(request: HTTPRequest, sequence: Int)] = []
    var closed = false
    var upgraded: [UInt8]?
    var interestUpdates = 0

    init(maxPipelined: Int = 32, budget: MemoryBudget = MemoryBudget(limit: .max), limits: HTTPParserLimits = .init(),
         accepting: Int? = nil) {
        state = HTTP1ConnectionState(
            configuration: .init(limits: limits, maxPipelined: maxPipelined, requestTimeout: 30, idleTimeout: 60, memoryBudget: budget,
                                 errorResponse: { status, message in HTTPResponse(status: status, body: Array(message.utf8)) },
                                 date: { Array("Mon, 07 Dec 2026 20:00:00 GMT".utf8) }),
            now: 0)
        self.accepting = accepting
    }

    var text: String { String(decoding: received, as: UTF8.self) }

    mutating func send(_ string: String) { send(Array(string.utf8)) }
    mutating func send(_ bytes: [UInt8]) {
        let actions = bytes.withUnsafeBytes { state.bytesRead($0, now: now) }
        execute(actions)
    }
    mutating func halfClose() { execute(state.peerClosed()) }
    mutating func answer(_ status: Int = 200, _ body: String = "ok", sequence: Int? = nil) {
        let sequence = sequence ?? dispatched.removeFirst().sequence
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain")
        execute(state.answerReady(sequence: sequence, response: HTTPResponse(status: status, headers: headers, body: Array(body.utf8)), now: now))
    }
    mutating func tick(at time: Double) {
        now = time
        execute(state.tick(now: time))
    }
    /// The peer reads: the socket accepts `bytes` more, and the driver flushes (EPOLLOUT).
    mutating func peerReads(_ bytes: Int?) {
        accepting = bytes
        flush()
    }

    mutating func execute(_ actions: [HTTP1ConnectionState.Action]) {
        for action in actions {
            switch action {
            case .dispatch(let request, let sequence):
                if closed { return }
                dispatched.append((request, sequence))
            case .flush:
                if closed { return }
                flush()
            case .continueAfterAnswer:
                if state.closed { return }
                execute(state.afterAnswerFlushed())
            case .updateInterest: interestUpdates += 1
            case .close:
                closed = true
                return
            case .upgradeToHTTP2(let bytes):
                upgraded = bytes
                closed = true
                return
            }
        }
    }

    mutating func flush() {
        while state.unsentCount > 0 {
            let allowed = accepting.map { min($0, state.unsentCount) } ?? state.unsentCount
            if allowed == 0 {
                execute(state.writeWouldBlock())
                return
            }
            received += state.withUnsentOutput { Array($0.prefix(allowed)) }
            if accepting != nil { accepting! -= allowed }
            state.wrote(allowed, now: now)
        }
        execute(state.outputDrained())
    }

    /// Status codes of the answers received so far, in order.
    var statuses: [Int] {
        text.pieces(by: "HTTP/1.1 ").dropFirst().compactMap { Int($0.prefix(3)) }
    }
}

fileprivate func get(_ path: String, _ extra: String = "") -> String { "GET \(path) HTTP/1.1\r\nHost: x\r\n\(extra)\r\n" }
fileprivate func post(_ path: String, _ body: String, _ extra: String = "") -> String {
    "POST \(path) HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\(extra)\r\n\(body)"
}

extension String {
    fileprivate func pieces(by separator: String) -> [String] {
        var parts: [String] = []
        var rest = Substring(self)
        while let range = rest.firstRange(of: separator) {
            parts.append(String(rest[..<range.lowerBound]))
            rest = rest[range.upperBound...]
        }
        parts.append(String(rest))
        return parts
    }
}

// MARK: Tests

@Suite struct HTTP1ConnectionStateTests {
    @Test func pipelinedRequestsAreAnsweredInOrderOneAtATime() {
        var peer = Peer()
        peer.send(get("/a") + post("/b", "hello") + get("/c"))
        // Only the first is with the handler; the others wait for its answer.
        #expect(peer.dispatched.map(\.request.head.target) == ["/a"])
        #expect(peer.state.pendingCount == 2)
        peer.answer(200, "A")
        #expect(peer.dispatched.map(\.request.head.target) == ["/b"])
        #expect(peer.dispatched.first?.request.body == Array("hello".utf8))
        peer.answer(201, "B")
        peer.answer(202, "C")
        #expect(peer.statuses == [200, 201, 202])
        #expect(peer.text.hasSuffix("\r\n\r\nC"))
        #expect(peer.text.contains("Date: Mon, 07 Dec 2026 20:00:00 GMT\r\n"))
        #expect(!peer.closed)
    }

    @Test func anAnswerForAnotherSequenceIsIgnored() {
        var peer = Peer()
        peer.send(get("/a"))
        peer.answer(200, "late", sequence: 7)
        #expect(peer.received.isEmpty)
        #expect(peer.dispatched.count == 1)
    }

    @Test func requestsSplitAtEveryByteBoundaryGiveTheSameRequests() {
        let input = Array((get("/first") + post("/second", "body-bytes") + "GET /third HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n").utf8)
        for cut in 0...input.count {
            var peer = Peer()
            peer.send(Array(input[..<cut]))
            peer.send(Array(input[cut...]))
            var targets: [String] = [], bodies: [[UInt8]] = []
            while let first = peer.dispatched.first {
                targets.append(first.request.head.target)
                bodies.append(first.request.body)
                peer.answer()
            }
            #expect(targets == ["/first", "/second", "/third"], "cut at \(cut)")
            #expect(bodies == [[], Array("body-bytes".utf8), Array("abc".utf8)], "cut at \(cut)")
            #expect(peer.statuses == [200, 200, 200], "cut at \(cut)")
        }
        // One byte at a time.
        var peer = Peer()
        for byte in input { peer.send([byte]) }
        var count = 0
        while !peer.dispatched.isEmpty { peer.answer(); count += 1 }
        #expect(count == 3)
    }

    @Test func aRejectionWaitsForTheAnswersBeforeItThenCloses() {
        var peer = Peer()
        peer.send(get("/a") + get("/b") + "BROKEN\r\n\r\n" + get("/never"))
        #expect(peer.received.isEmpty)
        #expect(!peer.state.wantsInput)
        peer.answer(200, "A")
        #expect(!peer.closed)
        peer.answer(200, "B")
        #expect(peer.statuses == [200, 200, 400])
        #expect(peer.text.contains("Connection: close\r\n"))
        #expect(peer.closed)
        #expect(peer.dispatched.isEmpty)
    }

    @Test func afterAHalfCloseTheWholeRequestsAreAnsweredThenTheConnectionCloses() {
        var peer = Peer()
        peer.send(get("/a") + get("/b") + "GET /cut-short HTTP/1.1\r\nHo")
        peer.halfClose()
        #expect(!peer.closed)
        peer.answer()
        peer.answer()
        #expect(peer.statuses == [200, 200])
        #expect(peer.closed)
        // Nothing sent at all: closes at once.
        var idle = Peer()
        idle.halfClose()
        #expect(idle.closed)
    }

    @Test func aSlowRequestMeetsTheRequestTimeoutFromItsFirstByte() {
        var peer = Peer()
        peer.now = 100
        peer.send("GET /slow HTTP/1.1\r\n")
        peer.now = 125
        peer.send("Host: x\r\n")  // trickling does not restart the clock
        peer.tick(at: 130)
        #expect(peer.received.isEmpty)
        peer.tick(at: 130.5)
        #expect(peer.statuses == [408])
        #expect(peer.closed)
    }

    @Test func anIdleConnectionClosesAfterTheIdleTimeoutButNotWhileAnAnswerIsOwed() {
        var idle = Peer()
        idle.tick(at: 60)
        #expect(!idle.closed)
        idle.tick(at: 60.1)
        #expect(idle.closed)

        var busy = Peer()
        busy.send(get("/slow-model"))
        busy.tick(at: 1000)
        #expect(!busy.closed)
        busy.answer()
        busy.tick(at: 1060.1)
        #expect(busy.closed)
    }

    @Test func unreadAnswersCloseAfterTheIdleTimeoutAndHoldBackFurtherRequests() {
        var peer = Peer(accepting: 0)
        let big = String(repeating: "x", count: (1 << 20) + 10)
        peer.send(get("/big") + get("/next"))
        peer.answer(200, big)
        // More than 1 MiB unsent: the next request waits.
        #expect(peer.dispatched.isEmpty)
        #expect(peer.state.wantsWrite)
        peer.peerReads(100)
        #expect(peer.dispatched.isEmpty)
        peer.peerReads(nil)
        #expect(peer.dispatched.map(\.request.head.target) == ["/next"])
        #expect(!peer.state.wantsWrite)

        var stuck = Peer(accepting: 0)
        stuck.send(get("/a"))
        stuck.answer()
        stuck.tick(at: 60.1)
        #expect(stuck.closed)
    }

    @Test func headGetsTheFieldsOfGetWithoutTheBody() {
        var peer = Peer()
        peer.send("HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(peer.dispatched.first?.request.head.method == "HEAD")
        peer.answer(200, "twelve bytes")
        #expect(peer.text.contains("Content-Length: 12\r\n"))
        #expect(peer.text.hasSuffix("\r\n\r\n"))
        #expect(!peer.closed)
    }

    @Test func http10IsToldKeepAliveOnlyWhenItAsked() {
        var keep = Peer()
        keep.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        keep.answer()
        #expect(keep.text.hasPrefix("HTTP/1.1 200"))
        #expect(keep.text.lowercased().contains("connection: keep-alive\r\n"))
        #expect(!keep.closed)

        var plain = Peer()
        plain.send("GET / HTTP/1.0\r\n\r\n")
        plain.answer()
        #expect(!plain.text.lowercased().contains("keep-alive"))
        #expect(plain.closed)
    }

    @Test func continueIsSentOnlyWhenNoEarlierAnswerIsOwed() {
        var peer = Peer()
        peer.send("POST /a HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        #expect(peer.text == "HTTP/1.1 100 Continue\r\n\r\n")
        peer.send("hi")
        #expect(peer.dispatched.first?.request.body == Array("hi".utf8))
        // The second request's 100 Continue would overtake the first one's answer.
        peer.send("POST /b HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        #expect(peer.text == "HTTP/1.1 100 Continue\r\n\r\n")
        peer.send("yo")
        peer.answer()
        peer.answer()
        #expect(peer.statuses == [100, 200, 200])
    }

    @Test func aBodyOverTheMemoryBudgetIsRefusedWith503AndItsBytesReleased() {
        let budget = MemoryBudget(limit: 10)
        var peer = Peer(budget: budget)
        // Declared too large: refused at its head, before 100 Continue.
        peer.send("POST /a HTTP/1.1\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
        #expect(peer.statuses == [503])
        #expect(peer.closed)
        #expect(budget.inUse == 0)

        // Chunked bodies are reserved as read; answered requests give their bytes back.
        var chunked = Peer(budget: budget)
        chunked.send("POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n0\r\n\r\n")
        #expect(budget.inUse == 6)
        chunked.send("POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        #expect(budget.inUse == 9)
        chunked.send("2\r\nde\r\n")  // 11 > 10
        #expect(budget.inUse == 6)  // the dropped body's 3 bytes are back
        chunked.answer()
        #expect(chunked.statuses == [200, 503])
        #expect(chunked.closed)
        #expect(budget.inUse == 0)
    }

    @Test func closingReleasesTheBudgetOfEveryUnansweredRequest() {
        let budget = MemoryBudget(limit: 1000)
        var peer = Peer(budget: budget)
        peer.send(post("/a", "12345") + post("/b", "678") + "POST /c HTTP/1.1\r\nContent-Length: 10\r\n\r\nab")
        #expect(budget.inUse == 10)
        peer.execute(peer.state.close())
        #expect(peer.closed)
        #expect(budget.inUse == 0)
    }

    @Test func readingPausesAtMaxPipelinedAndResumesAtHalf() {
        var peer = Peer(maxPipelined: 4)
        peer.send(String(repeating: get("/p"), count: 5))
        // One in flight, four waiting.
        #expect(peer.state.readPaused)
        #expect(!peer.state.interest.read)
        peer.answer()  // 3 waiting: still paused (resumes below 2)
        #expect(peer.state.readPaused)
        peer.answer()
        peer.answer()
        #expect(!peer.state.readPaused)
        #expect(peer.state.interest.read)
    }

    @Test func drainingClosesIdleConnectionsAtOnceAndOthersAfterTheirAnswer() {
        var idle = Peer()
        idle.execute(idle.state.beginDrain())
        #expect(idle.closed)

        var busy = Peer()
        busy.send(get("/a") + get("/b"))
        busy.execute(busy.state.beginDrain())
        #expect(!busy.closed)
        busy.answer()
        #expect(busy.statuses == [200])
        #expect(busy.text.contains("Connection: close\r\n"))
        #expect(busy.closed)
        #expect(busy.dispatched.isEmpty)
    }

    @Test func theHTTP2PrefaceHandsTheBytesOverEvenWhenSplit() {
        let preface = HTTP2Connection.preface + [0, 0, 0, 4, 0, 0, 0, 0, 0]
        for cut in 1..<HTTP2Connection.preface.count {
            var peer = Peer()
            peer.send(Array(preface[..<cut]))
            #expect(peer.upgraded == nil)
            peer.send(Array(preface[cut...]))
            #expect(peer.upgraded == preface, "cut at \(cut)")
        }
        // A prefix of the preface that turns out to be HTTP/1.1 ("PRI" is a method).
        var peer = Peer()
        peer.send("PRI")
        peer.send(" /x HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(peer.upgraded == nil)
        #expect(peer.dispatched.first?.request.head.target == "/x")
    }
}
