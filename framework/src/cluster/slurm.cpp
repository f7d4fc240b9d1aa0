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

// The #SBATCH lines every job of the sweep shares: where it runs and on whose account.
std::string placement(const SlurmOptions& options) {
  std::string text = fmt::format("#SBATCH --chdir={}\n", fs::current_path().string());
  if (!options.partition.empty()) text += fmt::format("#SBATCH --partition={}\n", options.partition);
  if (!options.time.empty()) text += fmt::format("#SBATCH --time={}\n", options.time);
  for (const auto& argument : options.sbatch_args) text += fmt::format("#SBATCH {}\n", argument);
  return text;
}

std::string job_id_of(const CommandOutput& output, const fs::path& job) {
  std::string job_id = output.output.substr(0, output.output.find_first_of(";\n"));
  if (output.code != 0 || job_id.empty() || !std::all_of(job_id.begin(), job_id.end(), ::isdigit))
    throw RuntimeError(fmt::format("sbatch failed (exit code {}): {}", output.code, output.output),
                       ErrorContext::in_file(job.string()));
  return job_id;
}

void write_options(const fs::path& path, const SlurmOptions& options) {
  toml::array arguments;
  for (const auto& argument : options.sbatch_args) arguments.push_back(argument);
  const toml::table root{{"partition", options.partition},         {"time", options.time},
                         {"warning_seconds", options.warning_seconds}, {"nodes", options.nodes},
                         {"gpus_per_node", options.gpus_per_node},   {"tasks_per_node", options.tasks_per_node},
                         {"sbatch_args", std::move(arguments)}};
  write_toml_file(path, "the Slurm options of this submission's job; a decider's next pass takes them", root);
}

}  // namespace

SlurmOptions read_slurm_options(const fs::path& submission) {
  SlurmOptions options;
  const fs::path path = submission / "slurm.toml";
  if (!fs::exists(path)) return options;
  const toml::table root = read_toml_file(path, "Slurm options");
  options.partition = root["partition"].value_or(std::string());
  options.time = root["time"].value_or(std::string());
  options.warning_seconds = root["warning_seconds"].value_or(options.warning_seconds);
  options.nodes = root["nodes"].value_or(options.nodes);
  options.gpus_per_node = root["gpus_per_node"].value_or(options.gpus_per_node);
  options.tasks_per_node = root["tasks_per_node"].value_or(options.tasks_per_node);
  if (const toml::array* arguments = root["sbatch_args"].as_array())
    for (const auto& argument : *arguments)
      if (auto text = argument.value<std::string>()) options.sbatch_args.push_back(*text);
  return options;
}

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
  if (options.cpus_per_task > 0) text += fmt::format("#SBATCH --cpus-per-task={}\n", options.cpus_per_task);
  if (options.gpus_per_task > 0) text += fmt::format("#SBATCH --gpus-per-task={}\n", options.gpus_per_task);
  text += placement(options_);
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
  write_options(submission_folder(folder, submission.number) / "slurm.toml", options_);
  return job;
}

std::string SlurmLauncher::decider_script(const Manifest& manifest, const fs::path& folder,
                                          const Submission& submission) const {
  std::string text = "#!/bin/bash\n";
  text += fmt::format("# difflab sweep \"{}\", submission {}: once job {} has ended, decides the rung its tasks "
                      "trained to and submits the next pass.\n",
                      manifest.name, submission.number, submission.job_id);
  text += fmt::format("#SBATCH --job-name=difflab-{}-decide\n", manifest.name);
  text += fmt::format("#SBATCH --dependency=afterany:{}\n", submission.job_id);
  text += "#SBATCH --ntasks=1\n#SBATCH --requeue\n#SBATCH --open-mode=append\n";
  text += fmt::format("#SBATCH --output={}\n",
                      (submission_folder(folder, submission.number) / "logs" / "decide.log").string());
  text += placement(options_);
  text += fmt::format("exec {} sweep decide {} --submission {}\n", shell_word(executable_path()),
                      shell_word(folder.string()), submission.number);
  return text;
}

std::string SlurmLauncher::submit_decider(const Manifest& manifest, const fs::path& folder,
                                          const Submission& submission) const {
  const fs::path job = submission_folder(folder, submission.number) / "decide.sbatch";
  write_file_atomically(job, decider_script(manifest, folder, submission));
  return job_id_of(run_command({"sbatch", "--parsable", job.string()}), job);
}

std::string SlurmLauncher::submit(const fs::path& job) const {
  if (!have_program("sbatch"))
    throw RuntimeError("sbatch not found: this is not a Slurm login node",
                       ErrorContext::in_file(job.string(), "--dry-run writes the script without submitting it"));
  return job_id_of(run_command({"sbatch", "--parsable", job.string()}), job);
}

std::vector<QueuedTask> SlurmLauncher::queued(const std::vector<Submission>& all) const {
  std::vector<QueuedTask> queued;
  std::vector<std::string> ids;
  for (const auto& submission : all)
    for (const std::string& id : {submission.job_id, submission.decider_job_id})
      if (!id.empty()) ids.push_back(id);
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
    if (fields[1] == "N/A") {  // a job that is not an array: a decider
      queued.push_back({fields[0], -1, running, fields[2], reason});
      continue;
    }
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
  for (const std::string& id : {submission.decider_job_id, submission.job_id}) {
    if (id.empty()) continue;
    const CommandOutput output = run_command({"scancel", id});
    if (output.code != 0)
      throw RuntimeError(fmt::format("scancel {} failed (exit code {}): {}", id, output.code, output.output));
  }
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
  // Said before it is done: Slurm ends this very script to requeue it, often before scontrol
  // returns, and a line printed after it would be lost.
  fmt::print("difflab: requeueing {} (scontrol requeue); it resumes from its checkpoint\n", job);
  std::fflush(stdout);
  const CommandOutput output = run_command({"scontrol", "requeue", job});
  if (output.code == 0) fmt::print("difflab: requeued {}\n", job);
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
