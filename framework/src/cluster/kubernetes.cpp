#include "cluster/kubernetes.h"

#include <cctype>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <fstream>
#include <sstream>

#include "cluster/command.h"
#include "difflab/error.h"
#include "difflab/files.h"

namespace difflab {
namespace fs = std::filesystem;
namespace {

// A YAML scalar as a double-quoted string (JSON's escapes are YAML's).
std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') out += '\\', out += static_cast<char>(c);
    else if (c == '\n') out += "\\n";
    else if (c < 0x20) out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  return out + "\"";
}

std::string flow_list(const std::vector<std::string>& words) {
  std::vector<std::string> items;
  for (const auto& word : words) items.push_back(quoted(word));
  return fmt::format("[{}]", fmt::join(items, ", "));
}

std::string job_name_of(const fs::path& job) {
  // The name is on the line after "metadata:" (written by manifest_yaml).
  std::ifstream lines(job);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("  name: ", 0) == 0) {
      std::string name = line.substr(8);
      if (name.size() >= 2 && name.front() == '"') name = name.substr(1, name.size() - 2);
      return name;
    }
  throw RuntimeError("no metadata.name", ErrorContext::in_file(job.string(), "written by difflab k8s"));
}

}  // namespace

std::string kubernetes_job_name(const std::string& sweep_name, const std::string& sweep_hash, int64_t submission) {
  std::string safe;
  for (char c : sweep_name) {
    const char lower = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    safe += std::isalnum(static_cast<unsigned char>(lower)) ? lower : '-';
  }
  const std::string tail = fmt::format("-{}-{}", sweep_hash.substr(0, 8), submission);
  safe = safe.substr(0, 63 - 8 - tail.size());  // "difflab-" + name + tail <= 63
  while (!safe.empty() && safe.back() == '-') safe.pop_back();
  return "difflab-" + (safe.empty() ? std::string("sweep") : safe) + tail;
}

std::string KubernetesLauncher::manifest_yaml(const Manifest& manifest, const fs::path& folder,
                                              const Submission& submission, const SubmitOptions& options) const {
  const int64_t completions = static_cast<int64_t>(submission.tasks.size());
  const int64_t parallelism = options.array_parallelism > 0 ? std::min(options.array_parallelism, completions) : completions;
  const std::string name = kubernetes_job_name(manifest.name, manifest.sweep_hash, submission.number);
  std::string text;
  text += fmt::format("# difflab sweep \"{}\" ({} points), submission {}: {} tasks.\n", manifest.name,
                      manifest.points.size(), submission.number, completions);
  text += fmt::format("# Pod K (JOB_COMPLETION_INDEX=K) trains the points listed under K in {}.\n",
                      tasks_path(folder, submission.number).string());
  text += "# Written by difflab k8s; kubectl apply -f this file (difflab k8s --apply does).\n";
  text += "apiVersion: batch/v1\nkind: Job\nmetadata:\n";
  text += fmt::format("  name: {}\n", quoted(name));
  if (!options_.namespace_name.empty()) text += fmt::format("  namespace: {}\n", quoted(options_.namespace_name));
  text += fmt::format("  labels:\n    app.kubernetes.io/name: difflab\n    difflab/sweep: {}\n",
                      quoted(manifest.sweep_hash));
  text += "spec:\n  completionMode: Indexed\n";
  text += fmt::format("  completions: {}\n  parallelism: {}\n", completions, parallelism);
  text += fmt::format("  backoffLimit: {}\n", options_.retries_per_task * completions);
  text += "  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: difflab\n";
  text += "    spec:\n      restartPolicy: Never\n";
  // SIGTERM, then this long before SIGKILL: the point checkpoints at its next step.
  text += "      terminationGracePeriodSeconds: 120\n";
  text += "      containers:\n      - name: task\n";
  text += fmt::format("        image: {}\n", quoted(options_.image));
  text += fmt::format("        workingDir: {}\n", quoted(folder.string()));
  text += fmt::format("        command: {}\n", flow_list(task_command(options_.executable, folder, submission.number)));
  if (options.cpus_per_task > 0 || options.gpus_per_task > 0) {
    text += "        resources:\n          limits:\n";
    if (options.cpus_per_task > 0) text += fmt::format("            cpu: {}\n", quoted(std::to_string(options.cpus_per_task)));
    if (options.gpus_per_task > 0) text += fmt::format("            nvidia.com/gpu: {}\n", options.gpus_per_task);
  }
  if (options.cpus_per_task > 0)
    text += fmt::format("        env:\n        - name: SLURM_CPUS_PER_TASK\n          value: {}\n",
                        quoted(std::to_string(options.cpus_per_task)));
  text += "        volumeMounts:\n        - name: sweep\n";
  text += fmt::format("          mountPath: {}\n", quoted(folder.string()));
  text += "      volumes:\n      - name: sweep\n        persistentVolumeClaim:\n";
  text += fmt::format("          claimName: {}\n", quoted(options_.claim));
  return text;
}

fs::path KubernetesLauncher::write_job(const Manifest& manifest, const fs::path& folder, const Submission& submission,
                                       const SubmitOptions& options) const {
  const fs::path job = submission_folder(folder, submission.number) / "job.yaml";
  write_file_atomically(job, manifest_yaml(manifest, folder, submission, options));
  return job;
}

std::string KubernetesLauncher::submit(const fs::path& job) const {
  if (!have_program("kubectl"))
    throw RuntimeError("kubectl not found", ErrorContext::in_file(job.string(), "apply it where kubectl reaches the "
                                                                               "cluster: kubectl apply -f " +
                                                                                   job.string()));
  const CommandOutput output = run_command({"kubectl", "apply", "-f", job.string()});
  if (output.code != 0)
    throw RuntimeError(fmt::format("kubectl apply failed (exit code {}): {}", output.code, output.output),
                       ErrorContext::in_file(job.string()));
  return job_name_of(job);
}

std::vector<QueuedTask> KubernetesLauncher::queued(const std::vector<Submission>& all) const {
  std::vector<QueuedTask> queued;
  if (!have_program("kubectl")) return queued;
  for (const auto& submission : all) {
    if (submission.job_id.empty()) continue;
    std::vector<std::string> words = {"kubectl", "get", "pods", "-l", "job-name=" + submission.job_id, "-o",
                                      "jsonpath={range .items[*]}{.metadata.annotations.batch\\.kubernetes\\.io/"
                                      "job-completion-index}|{.status.phase}{\"\\n\"}{end}"};
    if (!options_.namespace_name.empty()) words.insert(words.begin() + 1, {"-n", options_.namespace_name});
    const CommandOutput output = run_command(words);
    if (output.code != 0)
      throw RuntimeError(fmt::format("kubectl get pods failed (exit code {}): {}", output.code, output.output),
                         ErrorContext::with_hint("does kubectl reach the cluster from here?"));
    std::istringstream lines(output.output);
    for (std::string line; std::getline(lines, line);) {
      const size_t bar = line.find('|');
      if (bar == std::string::npos) continue;
      const std::string phase = line.substr(bar + 1);
      if (phase != "Pending" && phase != "Running") continue;  // Succeeded and Failed pods are gone from the queue
      try {
        queued.push_back({submission.job_id, std::stoll(line.substr(0, bar)), phase == "Running", phase, ""});
      } catch (const std::exception&) {
      }
    }
  }
  return queued;
}

void KubernetesLauncher::cancel(const Submission& submission) const {
  std::vector<std::string> words = {"kubectl", "delete", "job", submission.job_id};
  if (!options_.namespace_name.empty()) words.insert(words.begin() + 1, {"-n", options_.namespace_name});
  const CommandOutput output = run_command(words);
  if (output.code != 0)
    throw RuntimeError(fmt::format("kubectl delete job {} failed (exit code {}): {}", submission.job_id, output.code,
                                   output.output));
}

}  // namespace difflab
