import CLinuxShims
import Glibc
import Locks

/// Something registered with an event loop; called on the loop's thread with the epoll event mask.
public protocol EventHandler: AnyObject {
    func handleEvents(_ events: UInt32)
}

/// One epoll instance driven by one thread (the caller of `run`). Work from other threads
/// arrives only through `execute`, which queues a closure and wakes the loop through an
/// eventfd. A timerfd ticks `tick` handlers once per `tickInterval` (idle and request timeouts).
///
/// Thread safety: `execute`, `stop` may be called from any thread; everything else only on
/// the loop's thread.
public final class EventLoop: @unchecked Sendable {
    public let index: Int
    private let epollFD: Int32
    private let wakeFD: Int32
    private let timerFD: Int32
    /// Registered handlers; epoll's user data is (generation << 32 | slot), so an event for a
    /// slot that was reused since is recognised as stale and dropped.
    private var slots: [(generation: UInt32, handler: EventHandler?)] = []
    private var freeSlots: [Int] = []
    /// Guards `queued`.
    private let lock = Lock()
    private var queued: [@Sendable () -> Void] = []
    private var running = true
    private var ticks: [(EventLoop) -> Void] = []
    private var owningThread: pthread_t?

    private static let wakeSlot: UInt64 = 0xFFFF_FFFF
    private static let timerSlot: UInt64 = 0xFFFF_FFFE

    public init(index: Int, tickInterval milliseconds: Int = 1000) throws {
        self.index = index
        epollFD = try syscallChecked("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
        wakeFD = try syscallChecked("eventfd") { eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC)) }
        timerFD = try syscallChecked("timerfd_create") { timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK | TFD_CLOEXEC)) }
        var spec = itimerspec()
        spec.it_interval.tv_sec = milliseconds / 1000
        spec.it_interval.tv_nsec = (milliseconds % 1000) * 1_000_000
        spec.it_value = spec.it_interval
        try syscallChecked("timerfd_settime") { timerfd_settime(timerFD, 0, &spec, nil) }
        try addRaw(wakeFD, data: Self.wakeSlot, events: EPOLLIN.rawValue)
        try addRaw(timerFD, data: Self.timerSlot, events: EPOLLIN.rawValue)
    }

    deinit {
        Syscall.close(epollFD)
        Syscall.close(wakeFD)
        Syscall.close(timerFD)
    }

    private func addRaw(_ fd: Int32, data: UInt64, events: UInt32) throws(SystemError) {
        var event = epoll_event()
        event.events = events
        event.data.u64 = data
        try syscallChecked("epoll_ctl(ADD)") { epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) }
    }

    /// A registration: keeps the slot so interest can change and the handler can leave.
    public struct Registration: Sendable {
        let slot: Int
        let generation: UInt32
        let fd: Int32
    }

    /// Registers `fd` for `events` (EPOLLIN, EPOLLOUT, ...). Loop thread only.
    public func register(_ fd: Int32, events: UInt32, handler: EventHandler) throws(SystemError) -> Registration {
        let slot: Int
        if let reused = freeSlots.popLast() { slot = reused } else { slot = slots.count; slots.append((0, nil)) }
        slots[slot].generation &+= 1
        slots[slot].handler = handler
        let registration = Registration(slot: slot, generation: slots[slot].generation, fd: fd)
        do {
            try addRaw(fd, data: UInt64(registration.generation) << 32 | UInt64(slot), events: events)
        } catch {
            slots[slot].handler = nil
            freeSlots.append(slot)
            throw error
        }
        return registration
    }

    /// Changes the event mask of a registration. Loop thread only.
    public func modify(_ registration: Registration, events: UInt32) throws(SystemError) {
        var event = epoll_event()
        event.events = events
        event.data.u64 = UInt64(registration.generation) << 32 | UInt64(registration.slot)
        try syscallChecked("epoll_ctl(MOD)") { epoll_ctl(epollFD, EPOLL_CTL_MOD, registration.fd, &event) }
    }

    /// Removes a registration (before the fd is closed). Loop thread only.
    public func deregister(_ registration: Registration) {
        _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, registration.fd, nil)
        guard slots[registration.slot].generation == registration.generation else { return }
        slots[registration.slot].handler = nil
        freeSlots.append(registration.slot)
    }

    /// Adds a function called on every timer tick (about once per `tickInterval`). Loop thread only.
    public func onTick(_ body: @escaping (EventLoop) -> Void) { ticks.append(body) }

    /// Queues `work` to run on the loop's thread. Any thread.
    public func execute(_ work: @escaping @Sendable () -> Void) {
        lock.lock()
        let wasEmpty = queued.isEmpty
        queued.append(work)
        lock.unlock()
        if wasEmpty {
            var one: UInt64 = 1
            _ = try? syscall("write(eventfd)") { write(wakeFD, &one, 8) }  // EAGAIN: the counter is already set
        }
    }

    /// Whether the caller is the loop's own thread.
    public var inLoop: Bool { owningThread.map { pthread_equal($0, pthread_self()) != 0 } ?? false }

    /// Makes `run` return after the current iteration. Any thread.
    public func stop() { execute { [self] in running = false } }

    /// Runs the loop on the calling thread until `stop`.
    public func run() {
        owningThread = pthread_self()
        let capacity = 256
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: capacity)
        defer { events.deallocate() }
        while running {
            let count: Int32
            do {
                // Blocks (timeout -1): `.wouldBlock` cannot come back; EINTR is retried inside.
                guard case .done(let n) = try syscall("epoll_wait", { epoll_wait(epollFD, events, Int32(capacity), -1) }) else { continue }
                count = n
            } catch {
                fatalError("\(error)")
            }
            for i in 0..<Int(count) {
                let data = events[i].data.u64
                let mask = events[i].events
                switch data {
                case Self.wakeSlot:
                    var value: UInt64 = 0
                    _ = try? syscall("read(eventfd)") { read(wakeFD, &value, 8) }
                    runQueued()
                case Self.timerSlot:
                    var expirations: UInt64 = 0
                    _ = try? syscall("read(timerfd)") { read(timerFD, &expirations, 8) }
                    for tick in ticks { tick(self) }
                default:
                    let slot = Int(data & 0xFFFF_FFFF), generation = UInt32(data >> 32)
                    guard slot < slots.count, slots[slot].generation == generation, let handler = slots[slot].handler else { continue }
                    handler.handleEvents(mask)
                }
            }
        }
        runQueued()
    }

    private func runQueued() {
        lock.lock()
        let work = queued
        queued.removeAll(keepingCapacity: true)
        lock.unlock()
        for item in work { item() }
    }
}
