// The adaptive sweeps' rules (strategy/pruning.h): rungs and brackets from their formulas, and the
// promotion and median rules decision for decision against Optuna's own pruners (Debian's
// python3-optuna, tools/optuna_golden.py): hundreds of reports in random orders, with ties and
// NaN, for η ∈ {2, 3, 4}, both directions, several early-stopping rates (hyperband's brackets).
#include <cmath>
#include <fmt/format.h>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "strategy/pruning.h"
#include "test_support.h"

using namespace difflab;
namespace fs = std::filesystem;

TEST(Pruning, RungsAreMinEpochsTimesPowersOfTheReductionFactorBelowTheMaximum) {
  EXPECT_EQ(rung_epochs(1, 3, 27), (std::vector<int64_t>{1, 3, 9}));
  EXPECT_EQ(rung_epochs(1, 3, 27, 1), (std::vector<int64_t>{3, 9}));
  EXPECT_EQ(rung_epochs(2, 2, 20), (std::vector<int64_t>{2, 4, 8, 16}));
  EXPECT_EQ(rung_epochs(5, 3, 5), (std::vector<int64_t>{}));
  // Hyperband: ⌊log_η(R/r)⌋ + 1, exact at powers (27 = 3^3: four brackets, not three).
  EXPECT_EQ(hyperband_brackets(1, 3, 27), 4);
  EXPECT_EQ(hyperband_brackets(1, 3, 26), 3);
  EXPECT_EQ(hyperband_brackets(2, 2, 16), 4);
  EXPECT_EQ(hyperband_brackets(4, 4, 4), 1);
  EXPECT_EQ(hyperband_bracket(7, 3), 1);
}

TEST(Pruning, SynchronousHalvingKeepsTheBestFractionAndBreaksTiesByTrialOrder) {
  EXPECT_EQ(halving_promotions({0.5, 0.1, 0.3, 0.1, 0.9, 0.2}, 3, Direction::minimize),
            (std::vector<bool>{false, true, false, true, false, false}));
  EXPECT_EQ(halving_promotions({0.5, 0.1, 0.3}, 2, Direction::maximize), (std::vector<bool>{true, false, false}));
  EXPECT_EQ(halving_promotions({0.2, 0.2, 0.2, 0.2}, 3, Direction::minimize),
            (std::vector<bool>{true, false, false, false}));
  EXPECT_EQ(halving_promotions({std::nan(""), 0.4}, 4, Direction::minimize), (std::vector<bool>{false, true}));
}

namespace {

struct Scenario {
  std::string pruner;  // successive_halving | median
  Direction direction = Direction::minimize;
  int64_t min_resource = 1, reduction_factor = 3, early_stopping_rate = 0, startup_trials = 0, warmup_steps = 0;
  std::vector<std::tuple<int64_t, int64_t, double>> events;  // (trial, step, value); step -1: completed
  std::vector<int> decisions;                                // difflab's, one per report
};

std::string number(double value) { return std::isnan(value) ? "NaN" : fmt::format("{:.17g}", value); }

// Random interleavings of trials reporting one value per step, decided by difflab's rules as
// they go (a pruned trial reports no more; one that reaches its last step completes).
Scenario generate(std::mt19937_64& random, const std::string& pruner) {
  Scenario scenario;
  scenario.pruner = pruner;
  std::uniform_int_distribution<int64_t> eta(2, 4), trials(6, 24), rate(0, 2), min_resource(1, 2), steps(3, 12),
      startup(0, 4), warmup(0, 3);
  scenario.direction = random() % 2 ? Direction::minimize : Direction::maximize;
  scenario.reduction_factor = eta(random);
  scenario.min_resource = min_resource(random);
  scenario.early_stopping_rate = pruner == "successive_halving" ? rate(random) : 0;
  scenario.startup_trials = startup(random);
  scenario.warmup_steps = warmup(random);
  const int64_t n = trials(random), last_step = steps(random);
  // Values from a small set (ties), a few NaN.
  auto value = [&] {
    if (random() % 25 == 0) return std::nan("");
    return static_cast<double>(random() % 12) / 4.0;
  };
  std::vector<int64_t> step(static_cast<size_t>(n), 0), rung(static_cast<size_t>(n), 0);
  std::vector<bool> active(static_cast<size_t>(n), true);
  std::vector<std::vector<double>> own(static_cast<size_t>(n));
  std::map<int64_t, std::vector<double>> rung_values;     // rung index -> the values recorded there
  std::map<int64_t, std::vector<double>> finished_values;  // step -> completed trials' values
  int64_t finished = 0;
  std::vector<std::vector<double>> completed_own;
  // Trials start in order, and several run at once.
  int64_t started = 0;
  while (true) {
    std::vector<int64_t> running;
    for (int64_t t = 0; t < started; ++t)
      if (active[t]) running.push_back(t);
    if (started < n && (running.size() < 3 || random() % 3 == 0)) running.push_back(started++);
    if (running.empty()) break;
    const int64_t t = running[random() % running.size()];
    const int64_t s = ++step[t];
    const double v = value();
    own[t].push_back(v);
    scenario.events.emplace_back(t, s, v);
    bool prune = false;
    if (pruner == "successive_halving") {
      // Optuna's loop: at or past the trial's next rung, decide there; promoted, look at the next.
      while (true) {
        const int64_t rung_step = scenario.min_resource *
                                  static_cast<int64_t>(std::pow(scenario.reduction_factor,
                                                                scenario.early_stopping_rate + rung[t]));
        if (s < rung_step) break;
        if (std::isnan(v)) {
          prune = true;
          break;
        }
        std::vector<double>& values = rung_values[rung[t]];
        const RungDecision decision = asha_decision(v, values, scenario.reduction_factor, scenario.direction);
        values.push_back(v);
        if (!decision.promote) {
          prune = true;
          break;
        }
        ++rung[t];
      }
    } else {
      std::vector<double> at_step;
      for (const auto& values : completed_own)
        if (static_cast<int64_t>(values.size()) >= s) at_step.push_back(values[static_cast<size_t>(s - 1)]);
      const auto decision = median_decision(own[t], s, at_step, finished, scenario.startup_trials,
                                            scenario.warmup_steps, scenario.direction);
      prune = decision && decision->prune;
    }
    scenario.decisions.push_back(prune ? 1 : 0);
    if (prune) {
      active[t] = false;
    } else if (s == last_step) {
      active[t] = false;
      ++finished;
      completed_own.push_back(own[t]);
      scenario.events.emplace_back(t, -1, 0.0);
    }
  }
  return scenario;
}

std::string to_json(const std::vector<Scenario>& scenarios) {
  std::string text = "[";
  for (const Scenario& scenario : scenarios) {
    text += fmt::format("{}{{\"pruner\": \"{}\", \"direction\": \"{}\", \"min_resource\": {}, \"reduction_factor\": {}, "
                        "\"min_early_stopping_rate\": {}, \"startup_trials\": {}, \"warmup_steps\": {}, \"events\": [",
                        text.size() > 1 ? ", " : "", scenario.pruner,
                        scenario.direction == Direction::minimize ? "minimize" : "maximize", scenario.min_resource,
                        scenario.reduction_factor, scenario.early_stopping_rate, scenario.startup_trials,
                        scenario.warmup_steps);
    for (size_t i = 0; i < scenario.events.size(); ++i) {
      const auto& [trial, step, value] = scenario.events[i];
      text += fmt::format("{}[{}, {}, {}]", i ? ", " : "", trial, step, number(value));
    }
    text += "]}";
  }
  return text + "]";
}

void compare_with_optuna(const std::string& pruner, int64_t scenarios_count, uint64_t seed) {
  if (difflab::test::shell_command("/usr/bin/python3 -c 'import optuna'").exit_code != 0)
    GTEST_SKIP() << "Optuna is not installed (apt-get install python3-optuna): no golden reference";
  difflab::test::TempDir dir;
  std::mt19937_64 random(seed);
  std::vector<Scenario> scenarios;
  size_t reports = 0, prunes = 0;
  for (int64_t i = 0; i < scenarios_count; ++i) {
    scenarios.push_back(generate(random, pruner));
    reports += scenarios.back().decisions.size();
    for (int decision : scenarios.back().decisions) prunes += static_cast<size_t>(decision);
  }
  std::ofstream(dir / "scenarios.json") << to_json(scenarios);
  const difflab::test::Outcome optuna = difflab::test::shell_command(
      "/usr/bin/python3 " + difflab::test::source_dir() + "/tools/optuna_golden.py " + (dir / "scenarios.json").string());
  ASSERT_EQ(optuna.exit_code, 0) << optuna.output;
  // One JSON list of 0/1 per scenario: read the digits and x's in order, scenario by scenario.
  std::vector<std::vector<std::string>> golden(1);
  int depth = 0;
  for (char c : optuna.output) {
    if (c == '[') ++depth;
    else if (c == ']' && --depth == 1) golden.emplace_back();
    else if (depth == 2 && (c == '0' || c == '1' || c == 'x')) golden.back().push_back(std::string(1, c));
  }
  golden.pop_back();
  ASSERT_EQ(golden.size(), scenarios.size()) << optuna.output.substr(0, 500);
  for (size_t i = 0; i < scenarios.size(); ++i) {
    ASSERT_EQ(golden[i].size(), scenarios[i].decisions.size()) << "scenario " << i;
    for (size_t j = 0; j < golden[i].size(); ++j)
      ASSERT_EQ(golden[i][j], std::to_string(scenarios[i].decisions[j]))
          << "scenario " << i << " (" << pruner << ", eta " << scenarios[i].reduction_factor << ", rate "
          << scenarios[i].early_stopping_rate << "), report " << j;
  }
  std::printf("%s: %zu scenarios, %zu reports, %zu prunes: the same decisions as Optuna %s\n", pruner.c_str(),
              scenarios.size(), reports, prunes, "3.1");
  EXPECT_GT(reports, 300u);
  EXPECT_GT(prunes, 30u);
  EXPECT_LT(prunes, reports);
}

}  // namespace

TEST(Pruning, AshaAndHyperbandBracketsDecideAsOptunasSuccessiveHalvingPruner) {
  compare_with_optuna("successive_halving", 40, 20261202);
}

TEST(Pruning, MedianDecidesAsOptunasMedianPruner) { compare_with_optuna("median", 40, 7); }
