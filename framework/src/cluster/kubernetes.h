// The Kubernetes launcher: a submission is one Indexed Job (batch/v1, completionMode: Indexed;
// job.yaml) with one completion per task; pod K runs `difflab sweep task FOLDER --submission N`
// with JOB_COMPLETION_INDEX=K, the sweep folder mounted from a PersistentVolumeClaim at the same
// path. `--apply` runs kubectl apply; status asks kubectl for the Job's pods, cancel deletes
// the Job. A pod stopped by SIGTERM (deletion, eviction, preemption) checkpoints, closes its point
// as interrupted and fails; the Job's backoffLimit starts another pod for the index, which
// resumes it.
#pragma once

#include <cstdint>
#include <string>

#include "cluster/launcher.h"

namespace difflab {

struct KubernetesOptions {
  std::string image = "difflab:latest";  // a container image with difflab on its PATH
  std::string claim = "difflab-sweeps";  // the PersistentVolumeClaim that holds the sweep folder
  std::string namespace_name;            // metadata.namespace (default: kubectl's)
  std::string executable = "difflab";    // the task command's program inside the image
  int64_t retries_per_task = 3;          // backoffLimit = retries_per_task x completions
};

class KubernetesLauncher : public Launcher {
 public:
  explicit KubernetesLauncher(KubernetesOptions options = {}) : options_(std::move(options)) {}
  std::string name() const override { return "k8s"; }
  std::filesystem::path write_job(const Manifest& manifest, const std::filesystem::path& folder,
                                  const Submission& submission, const SubmitOptions& options) const override;
  std::string submit(const std::filesystem::path& job) const override;
  std::vector<QueuedTask> queued(const std::vector<Submission>& all) const override;
  void cancel(const Submission& submission) const override;

  // The Job manifest of a submission (what write_job writes).
  std::string manifest_yaml(const Manifest& manifest, const std::filesystem::path& folder, const Submission& submission,
                            const SubmitOptions& options) const;

 private:
  KubernetesOptions options_;
};

// A Kubernetes object name (RFC 1123 label: lowercase letters, digits and '-', at most 63) for a
// sweep's submission: difflab-<name>-<sweep hash 8>-<submission>.
std::string kubernetes_job_name(const std::string& sweep_name, const std::string& sweep_hash, int64_t submission);

}  // namespace difflab
