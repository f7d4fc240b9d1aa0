// A run's ledger: every row its completed epochs recorded (metrics, KID, artifacts) and every
// decision an adaptive sweep took about it, carried inside each checkpoint, so that a resume can
// check the checkpoint and the database against each other and restore what a database that
// fell behind (restored from an older shard, say) lacks. Not a second results store: the
// database stays the one place results are read from.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "results/results_store.h"

namespace difflab {

// One completed epoch as record_epoch wrote it.
struct EpochRows {
  int64_t epoch = 0;
  int64_t step = 0;
  std::vector<std::pair<std::string, double>> metrics;
  std::vector<ArtifactRecord> artifacts;
  std::optional<KidRecord> kid;
  std::vector<SampleMetricRecord> samples;  // FID, precision, ... (sample_metrics)
};

struct RunLedger {
  std::vector<EpochRows> epochs;         // in epoch order
  std::vector<DecisionRecord> decisions;  // run_id left 0: the run is the checkpoint's
  const EpochRows* find(int64_t epoch) const;
};

// Text, one tab-separated line a record; numbers printed in their shortest form that reads back
// as the same double (fmt's "{}"), so that a restored row equals the one recorded bit for bit.
std::string write_ledger(const RunLedger& ledger);
// Throws a runtime Error naming `where` (the checkpoint) for text it cannot read.
RunLedger read_ledger(const std::string& text, const std::string& where);

}  // namespace difflab
