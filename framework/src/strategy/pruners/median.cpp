// pruner = "median": the median stopping rule (Golovin et al. 2017, §3.2.2; Optuna's
// MedianPruner). At any epoch past `warmup_epochs`, once `startup_trials` trials have finished, a
// trial whose best value so far is worse than the finished trials' median there is pruned
// (strategy/pruning.h: median_decision).
#include "strategy/pruning.h"

namespace difflab {
namespace {

class MedianPruner final : public Pruner {
 public:
  explicit MedianPruner(const StrategySettings& settings)
      : startup_trials_(settings.integer("startup_trials")), warmup_epochs_(settings.integer("warmup_epochs")) {}
  // No fixed rungs: every epoch is a decision point, numbered by its epoch.
  std::vector<int64_t> rungs(int64_t, int64_t) const override { return {}; }
  std::optional<int64_t> rung_at(int64_t, int64_t epoch, int64_t) const override { return epoch; }
  std::optional<PrunerVerdict> decide(const PrunerView& view, Direction direction) const override {
    std::vector<double> finished;
    int64_t finished_trials = 0;
    PrunerVerdict verdict;
    for (const PrunerPeer& peer : view.peers) {
      if (!peer.finished) continue;
      ++finished_trials;
      if (peer.value) finished.push_back(*peer.value), verdict.compared.push_back(peer.attempt);
    }
    const auto median =
        median_decision(view.history, view.epoch, finished, finished_trials, startup_trials_, warmup_epochs_, direction);
    if (!median) return std::nullopt;
    verdict.value = median->best;
    verdict.cutoff = median->median;
    verdict.of = median->of + 1;
    verdict.prune = median->prune;
    return verdict;
  }

 private:
  int64_t startup_trials_ = 5, warmup_epochs_ = 0;
};

}  // namespace

const PrunerKind& median_pruner() {
  static const PrunerKind kind{
      "median",
      {{"startup_trials", StrategyKey::Type::integer, 0, 5, "finished trials before it prunes"},
       {"warmup_epochs", StrategyKey::Type::integer, 0, 0, "epochs before it prunes"}},
      /*method=*/false, /*synchronous=*/false,
      [](const StrategySettings& settings) -> std::unique_ptr<Pruner> {
        return std::make_unique<MedianPruner>(settings);
      }};
  return kind;
}

}  // namespace difflab
