/// TF Serving's servable life cycle, one state per version of a model. Only the manager in
/// `ModelRepository` changes states, and only as `VersionPlan.next` says.
public enum ServableState: String, Sendable, Equatable {
    /// Aspired (the source lists it, the policy wants it) and not yet loading. Not recorded:
    /// a version without a record is new.
    case new
    case loading
    case available
    /// Its last repository reference is being dropped (requests in flight keep it alive).
    case unloading
    /// Unloaded; the record is dropped once it reaches this state.
    case end
    /// The last load failed; retried only when the version's files change.
    case failed
}

/// What the manager knows of one version.
public struct VersionRecord: Sendable, Equatable {
    public var state: ServableState
    /// The files' signature (`VersionSource.signature`) the last load attempt saw.
    public var signature: String?
    /// The load error, for failed versions.
    public var error: String?

    public init(state: ServableState, signature: String? = nil, error: String? = nil) {
        self.state = state
        self.signature = signature
        self.error = error
    }
}

/// The manager's decisions as pure functions of its records and what the source found.
public enum VersionPlan {
    /// One step toward the aspired set.
    public enum Action: Sendable, Equatable {
        /// Load (or retry) this version.
        case load(Int)
        /// Drop the repository's reference to this available version.
        case unload(Int)
        /// Forget the failure record of a version whose files are gone.
        case forget(Int)
    }

    /// The next thing to do, or nil when the records match the aspired set. Callers apply the
    /// action (a load leaves the version available or failed with `aspired`'s signature, an
    /// unload or forget removes its record) and ask again.
    ///
    /// - `aspired`: versions the policy wants, with their files' signatures.
    /// - `onDisk`: every version the source found.
    ///
    /// Order: loads first, newest first, so a new version is ready before an old one goes;
    /// then unloads of versions no longer aspired, but only once an aspired version is
    /// available (a failed or still-loading newer version never takes the serving one away)
    /// or when the version's own files are gone; then failures of vanished versions are
    /// forgotten. A failed version is retried only when its signature changed; an available
    /// one is never reloaded.
    public static func next(records: [Int: VersionRecord], aspired: [Int: String], onDisk: Set<Int>) -> Action? {
        for version in aspired.keys.sorted(by: >) {
            switch records[version]?.state {
            case nil, .new?, .end?:
                return .load(version)
            case .failed?:
                if records[version]?.signature != aspired[version] { return .load(version) }
            case .loading?, .available?, .unloading?:
                continue
            }
        }
        let aspiredAvailable = aspired.keys.contains { records[$0]?.state == .available }
        for version in records.keys.sorted() where records[version]?.state == .available && aspired[version] == nil {
            if aspiredAvailable || !onDisk.contains(version) { return .unload(version) }
        }
        for version in records.keys.sorted() where records[version]?.state == .failed && !onDisk.contains(version) {
            return .forget(version)
        }
        return nil
    }

    /// The version number `selector` resolves to among `records` of `model`, or why none.
    /// `labels` maps version labels to numbers (TF Serving's version_labels).
    public static func resolve(_ selector: VersionSelector, model: String, records: [Int: VersionRecord],
                               labels: [String: Int]) throws(ServingError) -> Int {
        switch selector {
        case .latest:
            guard let latest = records.filter({ $0.value.state == .available }).keys.max() else { throw .modelNotReady(model) }
            return latest
        case .number(let number):
            switch records[number] {
            case let record? where record.state == .available:
                return number
            case let record? where record.state == .loading:
                throw .modelNotReady("\(model) version \(number) is still loading")
            case let record? where record.state == .failed:
                throw .modelNotReady("\(model) version \(number) failed to load: \(record.error ?? "")")
            default:
                throw .versionNotFound(model: model, version: String(number))
            }
        case .label(let label):
            guard let number = labels[label] else { throw .invalidInput("Unrecognized servable version label: \(label)") }
            guard records[number]?.state == .available else { throw .versionNotFound(model: model, version: "\(number) (label \(label))") }
            return number
        }
    }

    /// The versions the status endpoints report, ascending: loading, available and failed
    /// ones. With none of those, a model whose settings or layout are wrong reports that
    /// error as a failed version 0.
    public static func statuses(records: [Int: VersionRecord], modelError: String?) -> [VersionStatus] {
        var result: [VersionStatus] = []
        for (version, record) in records.sorted(by: { $0.key < $1.key }) {
            switch record.state {
            case .available: result.append(VersionStatus(version: version, state: .available))
            case .loading: result.append(VersionStatus(version: version, state: .loading))
            case .failed: result.append(VersionStatus(version: version, state: .failed, error: record.error))
            case .new, .unloading, .end: break
            }
        }
        if let modelError, result.isEmpty { result.append(VersionStatus(version: 0, state: .failed, error: modelError)) }
        return result
    }
}
