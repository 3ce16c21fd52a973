import Testing
@testable import Serving

/// The manager's decisions (`VersionPlan`, `VersionPolicy`) without files, models or threads:
/// records and source listings are plain values, loads succeed or fail as each test says.
struct VersionPlanTests {
    /// Applies `VersionPlan.next` until it has nothing left, as `ModelRepository.poll` does;
    /// versions in `failing` fail to load. Returns the actions in order and the final records.
    func run(_ records: [Int: VersionRecord], aspired: [Int: String], onDisk: Set<Int>, failing: Set<Int> = [])
        -> (actions: [VersionPlan.Action], records: [Int: VersionRecord]) {
        var records = records, actions: [VersionPlan.Action] = []
        while let action = VersionPlan.next(records: records, aspired: aspired, onDisk: onDisk) {
            actions.append(action)
            #expect(actions.count < 100, "the plan does not converge")
            if actions.count >= 100 { break }
            switch action {
            case .load(let version):
                records[version] = failing.contains(version)
                    ? VersionRecord(state: .failed, signature: aspired[version], error: "broken")
                    : VersionRecord(state: .available, signature: aspired[version])
            case .unload(let version), .forget(let version):
                records[version] = nil
            }
        }
        return (actions, records)
    }

    func available(_ versions: Int...) -> [Int: VersionRecord] {
        Dictionary(uniqueKeysWithValues: versions.map { ($0, VersionRecord(state: .available, signature: "s\($0)")) })
    }

    // MARK: version policies

    @Test func policiesSelectFromWhatIsOnDisk() {
        #expect(VersionPolicy.latest(1).select([1, 3, 2]) == [3])
        #expect(VersionPolicy.latest(2).select([1, 3, 2]) == [2, 3])
        #expect(VersionPolicy.latest(5).select([1, 2]) == [1, 2])
        #expect(VersionPolicy.all.select([1, 3]) == [1, 3])
        #expect(VersionPolicy.specific([2, 7]).select([1, 2, 3]) == [2])
        #expect(VersionPolicy.latest(1).select([]) == [])
    }

    @Test func firstPollLoadsAspiredNewestFirst() {
        let result = run([:], aspired: [1: "s1", 2: "s2", 3: "s3"], onDisk: [1, 2, 3])
        #expect(result.actions == [.load(3), .load(2), .load(1)])
        #expect(result.records == available(1, 2, 3))
    }

    @Test func matchingRecordsNeedNothing() {
        #expect(VersionPlan.next(records: available(2), aspired: [2: "s2"], onDisk: [1, 2]) == nil)
    }

    // MARK: reload ordering

    @Test func newVersionLoadsBeforeTheOldOneGoes() {
        let result = run(available(1), aspired: [2: "s2"], onDisk: [1, 2])
        #expect(result.actions == [.load(2), .unload(1)])
        #expect(result.records == available(2))
    }

    @Test func unloadsComeAfterEveryLoad() {
        let result = run(available(1, 2), aspired: [3: "s3", 4: "s4"], onDisk: [1, 2, 3, 4])
        #expect(result.actions == [.load(4), .load(3), .unload(1), .unload(2)])
    }

    @Test func anAvailableVersionIsNeverReloadedWhenItsFilesChange() {
        #expect(VersionPlan.next(records: available(1), aspired: [1: "changed"], onDisk: [1]) == nil)
    }

    @Test func aLoadingVersionIsLeftToFinish() {
        let records = [1: VersionRecord(state: .available), 2: VersionRecord(state: .loading)]
        // Version 1 stays: the aspired version 2 is not available yet.
        #expect(VersionPlan.next(records: records, aspired: [2: "s2"], onDisk: [1, 2]) == nil)
    }

    // MARK: failed loads

    @Test func aFailedNewVersionNeverReplacesTheServingOne() {
        let result = run(available(1), aspired: [2: "s2"], onDisk: [1, 2], failing: [2])
        #expect(result.actions == [.load(2)])
        #expect(result.records[1]?.state == .available)
        #expect(result.records[2] == VersionRecord(state: .failed, signature: "s2", error: "broken"))
        // Next poll, same files: no retry, the old version still serves.
        #expect(run(result.records, aspired: [2: "s2"], onDisk: [1, 2]).actions == [])
    }

    @Test func aFailedVersionIsRetriedWhenItsFilesChange() {
        let failed = [2: VersionRecord(state: .failed, signature: "s2", error: "broken")].merging(available(1)) { a, _ in a }
        let result = run(failed, aspired: [2: "s2-fixed"], onDisk: [1, 2])
        #expect(result.actions == [.load(2), .unload(1)])
        #expect(result.records == [2: VersionRecord(state: .available, signature: "s2-fixed")])
    }

    @Test func aServingVersionWhoseFilesVanishedGoesEvenWithoutAReplacement() {
        let result = run(available(1), aspired: [2: "s2"], onDisk: [2], failing: [2])
        #expect(result.actions == [.load(2), .unload(1)])
        #expect(result.records.keys.sorted() == [2])
    }

    @Test func failuresOfVanishedVersionsAreForgotten() {
        let records = [1: VersionRecord(state: .failed, signature: "s1", error: "broken")].merging(available(2)) { a, _ in a }
        #expect(run(records, aspired: [2: "s2"], onDisk: [2]).actions == [.forget(1)])
        // Still on disk (not aspired any more): the failure stays reported.
        #expect(run(records, aspired: [2: "s2"], onDisk: [1, 2]).actions == [])
    }

    @Test func everyAspiredVersionFailingKeepsNothingNew() {
        let result = run([:], aspired: [1: "s1", 2: "s2"], onDisk: [1, 2], failing: [1, 2])
        #expect(result.actions == [.load(2), .load(1)])
        #expect(result.records.values.allSatisfy { $0.state == .failed })
    }

    // MARK: lookups and labels

    @Test func latestIsTheNewestAvailable() throws {
        var records = available(1, 2)
        records[3] = VersionRecord(state: .loading)
        records[4] = VersionRecord(state: .failed, error: "broken")
        #expect(try VersionPlan.resolve(.latest, model: "m", records: records, labels: [:]) == 2)
        #expect(throws: ServingError.modelNotReady("m")) { try VersionPlan.resolve(.latest, model: "m", records: [:], labels: [:]) }
    }

    @Test func numberedLookupsSayWhyAVersionCannotServe() throws {
        let records = available(1).merging([3: VersionRecord(state: .loading), 4: VersionRecord(state: .failed, error: "bad graph")]) { a, _ in a }
        #expect(try VersionPlan.resolve(.number(1), model: "m", records: records, labels: [:]) == 1)
        #expect(throws: ServingError.modelNotReady("m version 3 is still loading")) {
            try VersionPlan.resolve(.number(3), model: "m", records: records, labels: [:])
        }
        #expect(throws: ServingError.modelNotReady("m version 4 failed to load: bad graph")) {
            try VersionPlan.resolve(.number(4), model: "m", records: records, labels: [:])
        }
        #expect(throws: ServingError.versionNotFound(model: "m", version: "9")) {
            try VersionPlan.resolve(.number(9), model: "m", records: records, labels: [:])
        }
    }

    @Test func labelsResolveToAvailableVersions() throws {
        let labels = ["stable": 1, "canary": 2, "next": 3]
        let records = available(1, 2).merging([3: VersionRecord(state: .loading)]) { a, _ in a }
        #expect(try VersionPlan.resolve(.label("stable"), model: "m", records: records, labels: labels) == 1)
        #expect(try VersionPlan.resolve(.label("canary"), model: "m", records: records, labels: labels) == 2)
        #expect(throws: ServingError.versionNotFound(model: "m", version: "3 (label next)")) {
            try VersionPlan.resolve(.label("next"), model: "m", records: records, labels: labels)
        }
        #expect(throws: ServingError.invalidInput("Unrecognized servable version label: beta")) {
            try VersionPlan.resolve(.label("beta"), model: "m", records: records, labels: labels)
        }
    }

    // MARK: status

    @Test func statusListsLoadingAvailableAndFailedAscending() {
        let records: [Int: VersionRecord] = [3: VersionRecord(state: .failed, error: "bad"), 1: VersionRecord(state: .available),
                                             2: VersionRecord(state: .loading), 4: VersionRecord(state: .unloading)]
        let statuses = VersionPlan.statuses(records: records, modelError: "ignored while versions exist")
        #expect(statuses.map(\.version) == [1, 2, 3])
        #expect(statuses.map(\.state) == [.available, .loading, .failed])
        #expect(statuses[2].error == "bad")
    }

    @Test func aModelErrorIsReportedAsFailedVersionZero() {
        let statuses = VersionPlan.statuses(records: [:], modelError: "config.pbtxt: bad")
        #expect(statuses.count == 1 && statuses[0].version == 0 && statuses[0].state == .failed && statuses[0].error == "config.pbtxt: bad")
        #expect(VersionPlan.statuses(records: [:], modelError: nil).isEmpty)
    }
}
