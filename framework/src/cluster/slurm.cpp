#include "cluster/slurm.h"

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sstream>

#include "cluster/command.h"
#include "difflab/error.h"
#include "difflab/files.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

std::optional<int64_t> slurm_variable(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  try {
    return std::stoll(value);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

std::string SlurmLauncher::script(const Manifest& manifest, const fs::path& folder, const Submission& submission,
                                  const SubmitOptions& options) const {
  const fs::path logs = submission_folder(folder, submission.number) / "logs";
  std::string array = fmt::format("0-{}", submission.tasks.size() - 1);
  if (options.array_parallelism > 0) array += fmt::format("%{}", options.array_parallelism);
  std::string text = "#!/bin/bash\n";
  text += fmt::format("# difflab sweep \"{}\" ({} points), submission {}: {} tasks.\n", manifest.name,
                      manifest.points.size(), submission.number, submission.tasks.size());
  text += fmt::format("# Task K trains the points listed under K in {}.\n", tasks_path(folder, submission.number).string());
  text += fmt::format("#SBATCH --job-name=difflab-{}\n", manifest.name);
  text += fmt::format("#SBATCH --array={}\n", array);
  const int64_t per_node = options_.tasks_per_node > 0 ? options_.tasks_per_node : std::max<int64_t>(1, options_.gpus_per_node);
  const bool parallel = options_.nodes * per_node > 1;
  if (parallel) {
    text += fmt::format("#SBATCH --nodes={}\n#SBATCH --ntasks-per-node={}\n", options_.nodes, per_node);
    if (options_.gpus_per_node > 0) text += fmt::format("#SBATCH --gpus-per-node={}\n", options_.gpus_per_node);
  } else {
    text += "#SBATCH --ntasks=1\n";
  }
  text += "#SBATCH --requeue\n";
  // One process: the warning goes to the batch shell, which is difflab itself (exec below).
  // Several: to every process of the step srun starts; they agree to stop at the same step.
  text += fmt::format("#SBATCH --signal={}USR2@{}\n", parallel ? "" : "B:", options_.warning_seconds);
  text += "#SBATCH --open-mode=append\n";
  text += fmt::format("#SBATCH --output={}/task-%a.log\n", logs.string());
  text += fmt::format("#SBATCH --chdir={}\n", fs::current_path().string());
  if (options.cpus_per_task > 0) text += fmt::format("#SBATCH --cpus-per-task={}\n", options.cpus_per_task);
  if (options.gpus_per_task > 0) text += fmt::format("#SBATCH --gpus-per-task={}\n", options.gpus_per_task);
  if (!options_.partition.empty()) text += fmt::format("#SBATCH --partition={}\n", options_.partition);
  if (!options_.time.empty()) text += fmt::format("#SBATCH --time={}\n", options_.time);
  for (const auto& argument : options_.sbatch_args) text += fmt::format("#SBATCH {}\n", argument);
  std::vector<std::string> words;
  for (const auto& word : task_command(executable_path(), folder, submission.number)) words.push_back(shell_word(word));
  text += fmt::format("exec {}{}\n", parallel ? "srun --kill-on-bad-exit=1 " : "", fmt::join(words, " "));
  return text;
}

fs::path SlurmLauncher::write_job(const Manifest& manifest, const fs::path& folder, const Submission& submission,
                                  const SubmitOptions& options) const {
  const fs::path job = submission_folder(folder, submission.number) / "job.sbatch";
  write_file_atomically(job, script(manifest, folder, submission, options));
  fs::permissions(job, fs::perms::owner_exec, fs::perm_options::add);
  return job;
}

std::string SlurmLauncher::submit(const fs::path& job) const {
  if (!have_program("sbatch"))
    throw RuntimeError("sbatch not found: this is not a Slurm login node",
                       ErrorContext::in_file(job.string(), "--dry-run writes the script without submitting it"));
  const CommandOutput output = run_command({"sbatch", "--parsable", job.string()});
  std::string job_id = output.output.substr(0, output.output.find_first_of(";\n"));
  if (output.code != 0 || job_id.empty() || !std::all_of(job_id.begin(), job_id.end(), ::isdigit))
    throw RuntimeError(fmt::format("sbatch failed (exit code {}): {}", output.code, output.output),
                       ErrorContext::in_file(job.string()));
  return job_id;
}

std::vector<QueuedTask> SlurmLauncher::queued(const std::vector<Submission>& all) const {
  std::vector<QueuedTask> queued;
  std::vector<std::string> ids;
  for (const auto& submission : all)
    if (!submission.job_id.empty()) ids.push_back(submission.job_id);
  if (ids.empty() || !have_program("squeue")) return queued;
  const CommandOutput output =
      run_command({"squeue", "--noheader", "--array", "--jobs", fmt::format("{}", fmt::join(ids, ",")),
                   "--format=%F|%K|%T|%r"});
  // squeue answers "Invalid job id specified" (exit 1) once every job it is asked about has left
  // the controller's memory (MinJobAge): nothing is queued then.
  if (output.code != 0 && output.output.find("Invalid job id") == std::string::npos)
    throw RuntimeError(fmt::format("squeue failed (exit code {}): {}", output.code, output.output),
                       ErrorContext::with_hint("is the Slurm controller reachable from here?"));
  std::istringstream lines(output.output);
  for (std::string line; std::getline(lines, line);) {
    std::vector<std::string> fields;
    std::stringstream split(line);
    for (std::string field; std::getline(split, field, '|');) fields.push_back(field);
    if (fields.size() != 4) continue;
    const bool running = fields[2] == "RUNNING";
    const std::string reason = fields[3] == "None" ? "" : fields[3];
    try {
      queued.push_back({fields[0], std::stoll(fields[1]), running, fields[2], reason});
    } catch (const std::exception&) {
      // "0-5%2": the array's pending tasks, not yet split
      const size_t dash = fields[1].find('-');
      if (dash == std::string::npos) continue;
      const int64_t first = std::stoll(fields[1].substr(0, dash));
      const int64_t last = std::stoll(fields[1].substr(dash + 1, fields[1].find('%') - dash - 1));
      for (int64_t k = first; k <= last; ++k) queued.push_back({fields[0], k, running, fields[2], reason});
    }
  }
  return queued;
}

void SlurmLauncher::cancel(const Submission& submission) const {
  if (submission.job_id.empty()) return;
  const CommandOutput output = run_command({"scancel", submission.job_id});
  if (output.code != 0)
    throw RuntimeError(fmt::format("scancel {} failed (exit code {}): {}", submission.job_id, output.code,
                                   output.output));
}

// Puts this array element (only it) back in the queue.
bool SlurmLauncher::requeue_this_task() const {
  std::string job;
  if (auto array_job = slurm_variable("SLURM_ARRAY_JOB_ID")) {
    job = fmt::format("{}_{}", *array_job, slurm_variable("SLURM_ARRAY_TASK_ID").value_or(0));
  } else if (auto single = slurm_variable("SLURM_JOB_ID")) {
    job = std::to_string(*single);
  }
  if (job.empty()) return false;
  const CommandOutput output = run_command({"scontrol", "requeue", job});
  if (output.code == 0) fmt::print("difflab: requeued {}; it resumes from its checkpoint\n", job);
  else fmt::print(stderr, "difflab: scontrol requeue {} failed: {}\n", job, output.output);
  return output.code == 0;
}

std::string SlurmLauncher::accounting(const Submission& submission) const {
  if (submission.job_id.empty() || !have_program("sacct")) return "";
  const CommandOutput output = run_command({"sacct", "--noheader", "--parsable2", "--allocations", "--jobs",
                                            submission.job_id, "--format=JobID,State,ExitCode,Elapsed"});
  if (output.code != 0 || output.output.empty() || output.output.find("not enabled") != std::string::npos) return "";
  return fmt::format("sacct (job {}):\n{}", submission.job_id, output.output);
}

}  // namespace difflab
