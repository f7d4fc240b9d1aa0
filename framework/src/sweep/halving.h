// Synchronous successive halving in a sweep folder (a cluster's). Each pass of trials is one job
// whose tasks train their trials up to the rung and wait there; the small job that runs after it
// (`difflab sweep decide`, cluster/launcher.h) reads where the sweep stands from the points'
// shards, decides the rung into them, and submits the next pass. The rule and the decisions rows
// are those of `difflab run` (sweep/adaptive.h): the same file gives the same decisions on a
// cluster and on one machine.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "sweep/sweep_folder.h"

namespace difflab {

struct HalvingPosition {
  std::vector<int64_t> rungs;   // the rungs' epochs
  int64_t rung = 0;             // the rung the trials in the running are reaching; rungs.size(): the end
  int64_t epoch = 0;            // its epoch (training.epochs at the end)
  int64_t epochs = 0;           // training.epochs
  std::vector<int64_t> running; // the points neither pruned nor failed, nor diverged
  std::vector<int64_t> behind;  // of those, the points that have not reached it (at the end: not finished)
  bool at_end() const { return rung == static_cast<int64_t>(rungs.size()); }
  // The position one rung on (once this one is decided).
  HalvingPosition next() const;
  // "rung 1 (epoch 3)", "the end (epoch 9)"
  std::string describe() const;
};

// Where a successive-halving sweep stands, from its shards (read only). A config Error naming the
// manifest for a sweep that is not one.
HalvingPosition halving_position(const Manifest& manifest, const std::filesystem::path& folder);

// Decides the position's rung, which every point in the running has reached: each point's
// decision is written into its own shard (a copy on local disk, renamed over the shard: no shard
// is written in place), a pruned point's run closed as pruned. A decision recorded before stands,
// so a decider that died half-way and runs again decides the same.
struct DecidedRung {
  int64_t trials = 0;             // the rung's trials (those a decider pruned before included)
  std::vector<int64_t> promoted;  // the points that go on
};
DecidedRung decide_halving_in_folder(const Manifest& manifest, const std::filesystem::path& folder,
                                     const HalvingPosition& position);

}  // namespace difflab
