#include "sweep/sweep.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fmt/format.h>
#include <map>
#include <optional>
#include <poll.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "difflab/error.h"
#include "plugin_host/registry.h"
#include "process/crash_point.h"
#include "process/stop_request.h"
#include "results/results_store.h"
#include "sweep/adaptive.h"
#include "sweep/processes.h"
#include "sweep/search.h"
#include "sweep/sweep_folder.h"
#include "training/distributed.h"
#include "training/trainer.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

// A data-parallel sweep's other ranks follow rank 0 through every point; rank 0 alone reads the
// database for the summary and decides a synchronous rung (its rows are written as the points'
// runs end, which the others do not wait for).
bool leads(const SweepOptions& options) {
  return options.run.distributed == nullptr || options.run.distributed->rank() == 0;
}

// Each point's newest run status, or nothing; read without creating a database that is not there.
std::vector<std::optional<RunRecord>> latest_runs(const std::vector<SweepRun>& runs) {
  std::map<std::string, std::unique_ptr<ResultsStore>> stores;
  std::vector<std::optional<RunRecord>> latest;
  for (const auto& run : runs) {
    const std::string database = run.database();
    if (!fs::exists(database)) {
      latest.emplace_back();
      continue;
    }
    auto& store = stores[database];
    if (!store) store = std::make_unique<ResultsStore>(database);
    latest.push_back(store->latest_run(run.experiment.config_hash()));
  }
  return latest;
}

// The summary, from the database (whichever process ran what): every point's newest run.
int print_summary(const std::vector<SweepRun>& runs, const std::vector<std::optional<RunRecord>>& before) {
  const std::vector<std::optional<RunRecord>> after = latest_runs(runs);
  int64_t finished = 0, skipped = 0, failed = 0, diverged = 0, pruned = 0, not_done = 0;
  std::vector<std::string> problems;
  std::optional<std::pair<double, size_t>> best;  // (best KID, point)
  std::string best_text;
  for (size_t i = 0; i < runs.size(); ++i) {
    const std::optional<RunRecord>& run = after[i];
    const std::string where = fmt::format("point {} ({})", i + 1, runs[i].point);
    if (!run || resumable(run->status)) {
      ++not_done;
      if (run) problems.push_back(fmt::format("{}: run {} {}", where, run->id,
                                              run->status == RunStatus::running ? "still running" : "interrupted"));
      continue;
    }
    switch (run->status) {
      case RunStatus::finished: {
        const bool was_finished = before[i] && before[i]->id == run->id && before[i]->status == RunStatus::finished;
        (was_finished ? skipped : finished) += 1;
        const std::optional<ResultsStore::BestKid> kid = ResultsStore(runs[i].database()).best_kid(run->id);
        if (kid && (!best || kid->kid < best->first)) {
          best = {kid->kid, i};
          best_text = fmt::format("run {} ({}): best KID {:.4f} at epoch {}", run->id, runs[i].point, kid->kid, kid->epoch);
        }
        continue;
      }
      case RunStatus::pruned: ++pruned; continue;
      case RunStatus::diverged: ++diverged; break;
      default: ++failed; break;
    }
    problems.push_back(fmt::format("{}: run {} {}: {}", where, run->id, to_string(run->status), run->error));
  }
  fmt::print("sweep: {} runs — {} finished, {} skipped (finished before), {} failed, {} diverged, {}{} not done\n",
             runs.size(), finished, skipped, failed, diverged, pruned > 0 ? fmt::format("{} pruned, ", pruned) : "",
             not_done);
  for (const auto& problem : problems) fmt::print("  {}\n", problem);
  if (failed + diverged > 0) fmt::print("  (--retry-failed runs failed and diverged points again)\n");
  if (best) fmt::print("best so far: {}\n", best_text);
  if (runs.front().adaptive) fmt::print("{}\n", adaptive_summary(runs));
  std::fflush(stdout);
  return failed + diverged + not_done > 0 ? 1 : 0;
}

// `hash`: the sweep's (sweep_folder.h's sweep_hash), computed once by the caller, not per point.
RunOptions run_options(const SweepOptions& options, const std::vector<SweepRun>& runs, size_t i,
                       const std::string& announce, const std::string& hash, const PeerLookup& peers) {
  const SweepRun& run = runs[i];
  RunOptions result = options.run;
  result.verdict = adaptive_verdict(runs, i, peers);
  const int64_t trials = run.search ? run.search->space.trials : static_cast<int64_t>(runs.size());
  result.sweep_trial = sweep_trial_record(run, trials, hash);
  result.new_run = options.new_run;
  result.retry_failed = options.retry_failed;
  result.threads = options.threads;
  result.variant = run.variant;
  result.announce = announce;
  result.after_epoch = options.after_epoch;
  result.after_step = options.after_step;
  return result;
}

// Runs one point; a failure of the run itself is reported and the sweep goes on, bad input (it
// would fail every run) and an interrupt stop it. Returns whether this process trained it (or
// tried to).
bool run_point(const std::vector<SweepRun>& runs, size_t i, const PluginRegistry& registry,
               const SweepOptions& options, bool quiet_skips, const std::string& hash, const PeerLookup& peers = {}) {
  const int64_t total = runs[i].search ? runs[i].search->space.trials : static_cast<int64_t>(runs.size());
  const std::string header = fmt::format("== sweep run {}/{}: {}", i + 1, total, runs[i].point);
  if (!quiet_skips) {
    fmt::print("{}\n", header);
    std::fflush(stdout);
  }
  try {
    RunResult result = run_experiment(runs[i].experiment, registry,
                                      run_options(options, runs, i, quiet_skips ? header : "", hash, peers));
    if (result.outcome == RunOutcome::trained || result.outcome == RunOutcome::paused ||
        result.outcome == RunOutcome::pruned)
      return true;
    if (!quiet_skips) fmt::print("   skipped: run {} {}\n", result.run_id, result.detail);
    return false;
  } catch (const Error& error) {
    if (error.kind() != ErrorKind::runtime) throw;
    fmt::print(stderr, "difflab: sweep run {} failed: {}\n", i + 1, describe(error));
  } catch (const std::exception& error) {
    fmt::print(stderr, "difflab: sweep run {} failed: {}\n", i + 1, describe(error));
  }
  std::fflush(stderr);
  return true;
}

// A worker: the sweep's command line with --worker K --threads T.
void spawn(Child& worker, int64_t index, const SweepOptions& options, int64_t threads) {
  std::vector<std::string> arguments = options.worker_command;
  for (const std::string& extra : {std::string("--worker"), std::to_string(index), std::string("--threads"),
                                   std::to_string(threads)})
    arguments.push_back(extra);
  start_child(worker, arguments);
}

// N worker processes through the sweep's points; with `summary`, then the sweep's summary. Returns
// the exit code (130 when interrupted, 2 when a worker found bad input).
int run_parallel(const std::vector<SweepRun>& runs, const PluginRegistry& registry, const SweepOptions& options,
                 bool summary = true) {
  if (options.new_run)
    throw ConfigError("--new cannot be combined with --workers: every worker would start every run again");
  for (const auto& run : runs)
    if (run.database() != runs.front().database())
      throw ConfigError("with --workers, every run of the sweep must use one database",
                        ErrorContext::for_key(run.experiment.file.string(), "experiment.database", fmt::format("\"{}\" and \"{}\" differ", runs.front().database(), run.database())));
  // Bad input fails here, once, rather than in every worker.
  check_data_available(runs, registry);
  const std::vector<std::optional<RunRecord>> before = latest_runs(runs);
  { ResultsStore create(runs.front().database()); }  // created once, not raced by the workers

  const int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t threads = options.threads > 0 ? options.threads : std::max<int64_t>(1, cores / options.workers);
  fmt::print("difflab: {} {}, {} workers with {} thread{} each (database {})\n",
             runs.front().search ? runs.front().search->space.trials : static_cast<int64_t>(runs.size()),
             runs.front().search ? "trials" : "runs", options.workers,
             threads, threads == 1 ? "" : "s", runs.front().database());

  const StopRequest stop_request;  // passed on to the workers, which close their runs as interrupted
  std::vector<Child> workers;
  for (int64_t k = 1; k <= options.workers; ++k) {
    workers.push_back({fmt::format("worker {}", k), -1, -1, ""});
    spawn(workers.back(), k, options, threads);
  }
  int64_t replacements = 0;
  bool interrupted = false, input_error = false, forwarded = false;
  while (std::any_of(workers.begin(), workers.end(), [](const Child& w) { return w.pid > 0; })) {
    if (StopRequest::requested() && !forwarded) {
      interrupted = forwarded = true;
      for (const auto& worker : workers)
        if (worker.pid > 0) kill(worker.pid, SIGTERM);
    }
    std::vector<pollfd> fds;
    for (const auto& worker : workers) fds.push_back({worker.pid > 0 ? worker.output : -1, POLLIN, 0});
    if (poll(fds.data(), fds.size(), 200) > 0)
      for (size_t i = 0; i < workers.size(); ++i)
        if (fds[i].revents & POLLIN) forward_output(workers[i], false);
    for (auto& worker : workers) {
      if (worker.pid <= 0) continue;
      int status = 0;
      if (waitpid(worker.pid, &status, WNOHANG) != worker.pid) continue;
      forward_output(worker, true);
      close(worker.output);
      worker.pid = -1;
      if (WIFEXITED(status)) {
        const int code = WEXITSTATUS(status);
        if (code == 130) interrupted = true;
        if (code == 2) input_error = true;
        if (code != 0 && code != 1 && code != 130)
          fmt::print(stderr, "difflab: {} exited with code {}\n", worker.label, code);
        continue;
      }
      const int signal = WTERMSIG(status);
      if (interrupted || StopRequest::requested() || input_error || replacements >= options.workers) {
        fmt::print(stderr, "difflab: {} was killed by signal {}\n", worker.label, signal);
        continue;
      }
      // Its run is left "running" by a dead process: the others, or this replacement, claim it.
      ++replacements;
      fmt::print(stderr, "difflab: {} was killed by signal {}; starting a replacement\n", worker.label, signal);
      spawn(worker, static_cast<int64_t>(&worker - workers.data()) + 1, options, threads);
    }
  }
  const int code = summary ? print_summary(runs, before) : 0;
  if (interrupted) return 130;
  return input_error ? 2 : code;
}

// Synchronous successive halving: one pass per rung, in which every trial still in the running
// trains to the rung's epoch and waits there; then the rung is decided at once, and the next pass
// takes the promoted trials on. The last pass trains them to the end. Run again after a kill, the
// rungs decided before stand and each trial resumes from its checkpoint.
int run_halving(const std::vector<SweepRun>& runs, const PluginRegistry& registry, const SweepOptions& options) {
  const std::string hash = sweep_hash(runs);
  const std::vector<std::optional<RunRecord>> before = latest_runs(runs);
  const std::vector<int64_t> rungs = halving_rungs(runs);
  for (size_t rung = 0; rung <= rungs.size(); ++rung) {
    if (rung < rungs.size()) fmt::print("== successive halving: rung {} (epoch {})\n", rung, rungs[rung]);
    else fmt::print("== successive halving: the promoted trials to the end\n");
    std::fflush(stdout);
    if (options.workers > 1) {
      if (const int code = run_parallel(runs, registry, options, false); code != 0) return code;
    } else {
      for (size_t i = 0; i < runs.size(); ++i) run_point(runs, i, registry, options, false, hash);
    }
    if (rung == rungs.size()) break;
    if (leads(options)) {
      const int64_t kept = decide_halving_rung(runs, static_cast<int64_t>(rung));
      fmt::print("== rung {} decided: {} trial(s) go on\n", rung, kept);
    }
    if (ProcessGroup* group = options.run.distributed) group->max(0);  // the others wait for the decision
  }
  return leads(options) ? print_summary(runs, before) : 0;
}

// Trial `trial`'s recorded point, or a new proposal when it is the lowest trial without one; the
// trial's run in `runs`. False when another process proposed it first (workers) or none is left.
bool take_proposal(const SweepRun& sweep, ResultsStore& store, const std::string& hash, std::vector<SweepRun>& runs,
                   std::optional<int64_t>& trial) {
  if (trial) {
    if (const auto recorded = recorded_proposal(store, hash, *trial)) {
      runs[static_cast<size_t>(*trial)] = search_trial(sweep, *recorded, *trial);
      return true;
    }
  }
  const std::optional<ProposedTrial> proposed = propose_next(sweep, store, hash, true);
  if (!proposed || (trial && proposed->trial != *trial)) return false;
  crash_point("search.proposed");  // recorded, not yet claimed: the trial resumes this proposal
  trial = proposed->trial;
  runs[static_cast<size_t>(*trial)] = search_trial(sweep, proposed->point, *trial);
  return true;
}

// The summary of a model-based sweep: its proposed trials as the database holds them.
int search_summary(const SweepRun& sweep, const std::string& hash,
                   const std::map<int64_t, std::optional<RunRecord>>& before) {
  ResultsStore store(sweep.database());
  std::vector<SweepRun> runs;
  std::vector<std::optional<RunRecord>> earlier;
  for (int64_t t = 0; t < sweep.search->space.trials; ++t)
    if (const auto recorded = recorded_proposal(store, hash, t)) {
      runs.push_back(search_trial(sweep, *recorded, t));
      const auto was = before.find(t);
      earlier.push_back(was == before.end() ? std::nullopt : was->second);
    }
  const int64_t unproposed = sweep.search->space.trials - static_cast<int64_t>(runs.size());
  if (runs.empty()) {
    fmt::print("sweep: none of its {} trials proposed yet\n", sweep.search->space.trials);
    return 1;
  }
  const int code = print_summary(runs, earlier);
  if (unproposed > 0) fmt::print("  {} of {} trials not proposed yet: run the sweep again\n", unproposed, sweep.search->space.trials);
  return unproposed > 0 ? 1 : code;
}

// Each proposed trial's newest run before this sweep command (for "skipped (finished before)").
std::map<int64_t, std::optional<RunRecord>> trial_runs_now(const SweepRun& sweep, const std::string& hash) {
  std::map<int64_t, std::optional<RunRecord>> now;
  if (!fs::exists(sweep.database())) return now;
  ResultsStore store(sweep.database());
  for (const ProposalRecord& recorded : store.proposals(hash))
    now[recorded.trial] = latest_runs({search_trial(sweep, *recorded_proposal(store, hash, recorded.trial), recorded.trial)}).front();
  return now;
}

// A model-based sweep (sampler = "tpe"): in this process, trial after trial, each proposed from
// the ones before it (or its recorded proposal, run again), then trained as a sweep point is; with
// --workers, N processes that each propose the next trial when they are free (run_search_worker).
int run_search(const SweepRun& sweep, const PluginRegistry& registry, const SweepOptions& options) {
  const SearchSpace& space = sweep.search->space;
  if (options.run.distributed != nullptr)
    throw ConfigError("sampler = \"tpe\" does not run data-parallel yet",
                      ErrorContext::for_key(sweep.experiment.file.string(), "sweep.sampler", "drop --nproc"));
  const std::string hash = search_hash(sweep);
  const auto before = trial_runs_now(sweep, hash);
  if (options.workers > 1) {
    const int code = run_parallel({sweep}, registry, options, false);
    if (code != 0) return code;
    return search_summary(sweep, hash, before);
  }
  ResultsStore store(sweep.database());
  std::vector<SweepRun> runs = search_trials(sweep);
  const PeerLookup peers = search_peers(hash);
  for (int64_t t = 0; t < space.trials; ++t) {
    if (StopRequest::requested()) return 130;
    fmt::print("== sweep trial {}/{}\n", t + 1, space.trials);
    std::fflush(stdout);
    std::optional<int64_t> trial = t;
    if (!take_proposal(sweep, store, hash, runs, trial)) break;
    run_point(runs, static_cast<size_t>(t), registry, options, true, hash, peers);
  }
  if (StopRequest::requested()) return 130;
  return search_summary(sweep, hash, before);
}

// A worker of a model-based sweep: takes a proposed trial nobody trains (a dead worker's, or one
// proposed and not yet claimed), else proposes the next trial, and trains it; until every trial is
// proposed and none is left to take. Each trial at most once per worker.
int run_search_worker(const SweepRun& sweep, const PluginRegistry& registry, const SweepOptions& options) {
  const std::string hash = search_hash(sweep);
  ResultsStore store(sweep.database());
  std::vector<SweepRun> runs = search_trials(sweep);
  const PeerLookup peers = search_peers(hash);
  std::vector<bool> attempted(runs.size(), false);
  while (!StopRequest::requested()) {
    bool worked = false;
    for (const ProposalRecord& recorded : store.proposals(hash)) {
      const size_t t = static_cast<size_t>(recorded.trial);
      if (t >= runs.size() || attempted[t]) continue;
      std::optional<int64_t> trial = recorded.trial;
      take_proposal(sweep, store, hash, runs, trial);
      if (run_point(runs, t, registry, options, true, hash, peers)) {
        attempted[t] = worked = true;
        break;
      }
    }
    if (worked) continue;
    std::optional<int64_t> trial;
    if (!take_proposal(sweep, store, hash, runs, trial)) break;
    attempted[static_cast<size_t>(*trial)] = true;
    run_point(runs, static_cast<size_t>(*trial), registry, options, true, hash, peers);
  }
  return StopRequest::requested() ? 130 : 0;
}

}  // namespace

int run_sweep(const std::vector<SweepRun>& runs, const PluginRegistry& registry, const SweepOptions& options) {
  // Every point's data and components before the first point runs: a bad input is exit 2 with
  // nothing written, not a failure found after other points finished.
  check_before_running(runs, registry);
  if (runs.front().search) return run_search(runs.front(), registry, options);
  if (runs.front().adaptive && runs.front().adaptive->synchronous)
    return run_halving(runs, registry, options);
  if (options.workers > 1) return run_parallel(runs, registry, options);
  const std::vector<std::optional<RunRecord>> before = latest_runs(runs);
  const std::string hash = sweep_hash(runs);
  for (size_t i = 0; i < runs.size(); ++i) run_point(runs, i, registry, options, false, hash);
  return leads(options) ? print_summary(runs, before) : 0;
}

int run_sweep_worker(const std::vector<SweepRun>& runs, const PluginRegistry& registry,
                     const SweepOptions& options, int64_t worker) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // a pipe to the parent: lines in the order printed
  if (runs.front().search) return run_search_worker(runs.front(), registry, options);
  const std::string hash = sweep_hash(runs);
  // Workers start at different points so that they rarely contend for the same claim; a pass
  // that trains nothing means everything is finished, failed, or in another live worker's hands.
  // (A point the worker skipped because it was busy may be claimable later: its owner died.)
  // Each point at most once per worker: a deterministic failure is not retried in a loop.
  const size_t start = static_cast<size_t>(worker - 1) % runs.size();
  std::vector<bool> attempted(runs.size(), false);
  bool worked = true;
  while (worked) {
    worked = false;
    for (size_t k = 0; k < runs.size(); ++k) {
      const size_t i = (start + k) % runs.size();
      if (attempted[i] || !run_point(runs, i, registry, options, true, hash)) continue;
      attempted[i] = worked = true;
    }
  }
  return 0;
}

}  // namespace difflab
