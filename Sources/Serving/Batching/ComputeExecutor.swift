/// The seam between Serving and the threads that compute (Workers' `ComputePool`, given by
/// the executable): batch schedulers and the inference pipeline submit jobs through it.
/// Runs jobs on threads the executable owns. Serving never creates threads.
public protocol ComputeExecutor: Sendable {
    /// Number of workers; a job learns which one runs it.
    var workerCount: Int { get }
    /// Queues `job`; it runs once on one worker thread with that worker's index.
    func submit(_ job: @escaping @Sendable (_ worker: Int) -> Void)
    /// Queues `job` after `seconds` have passed.
    func submit(after seconds: Double, _ job: @escaping @Sendable (_ worker: Int) -> Void)
}
