// `difflab results` tables: the parameters that vary between runs, sorting, and each format.
#include <SQLiteCpp/SQLiteCpp.h>
#include <cmath>

#include "config/experiment.h"
#include "results/results_report.h"
#include "results/results_store.h"
#include "test_support.h"

using namespace difflab;

namespace {

// Three runs: mae/cosine, mse/cosine, mse/linear, with known losses and KID.
void fill(ResultsStore& store) {
  const std::vector<std::tuple<std::string, std::string, double, double>> runs = {
      {"mae", "cosine", 0.30, 0.12}, {"mse", "cosine", 0.50, 0.08}, {"mse", "linear", 0.40, 0.20}};
  for (const auto& [loss, schedule, n_loss, kid] : runs) {
    Experiment experiment = parse_experiment("", "exp.toml", {"loss.plugin=" + loss, "schedule.plugin=" + schedule},
                                             difflab::test::registry());
    int64_t run_id = store.start_run(experiment, "{}");
    store.record_epoch(run_id, 1, 10, {{"n_loss", n_loss + 0.1}}, {},
                       KidRecord{kid + 0.05, 0.0, "per_batch", "pixels", "ddim", 5, 64, 64});
    store.record_epoch(run_id, 2, 20, {{"n_loss", n_loss}}, {},
                       KidRecord{kid, 0.0, "per_batch", "pixels", "ddim", 5, 64, 64});
    store.finish_run(run_id);
  }
}

}  // namespace

TEST(RunsTable, ShowsTheParametersThatVaryAndTheBestKid) {
  difflab::test::TempDir dir;
  ResultsStore store(dir / "results.sqlite");
  fill(store);
  Table table = runs_table(store);
  ASSERT_EQ(table.rows.size(), 3u);
  EXPECT_EQ(table.columns[2], "schedule.plugin");
  EXPECT_EQ(table.columns[3], "loss.plugin");
  EXPECT_EQ(std::count(table.columns.begin(), table.columns.end(), "training.epochs"), 0);  // same in all
  auto column = [&](const std::string& name) {
    return static_cast<size_t>(std::find(table.columns.begin(), table.columns.end(), name) - table.columns.begin());
  };
  EXPECT_EQ(*table.rows[1][column("loss.plugin")], "mse");
  EXPECT_EQ(*table.rows[1][column("n_loss")], "0.5");         // the latest epoch's
  EXPECT_EQ(*table.rows[1][column("best_kid")], "0.08");      // the minimum over epochs
  EXPECT_EQ(*table.rows[1][column("best_kid_epoch")], "2");

  RunsQuery by_kid_query;
  by_kid_query.sort = "best_kid";
  by_kid_query.limit = 2;
  Table by_kid = runs_table(store, by_kid_query);
  ASSERT_EQ(by_kid.rows.size(), 2u);
  EXPECT_EQ(*by_kid.rows[0][0], "2");
  EXPECT_EQ(*by_kid.rows[1][0], "1");
  RunsQuery descending;
  descending.sort = "-n_loss";
  EXPECT_EQ(*runs_table(store, descending).rows[0][0], "2");
  RunsQuery unknown;
  unknown.sort = "kidd";
  EXPECT_THROW(runs_table(store, unknown), Error);
}

TEST(FormatTable, WritesEachFormat) {
  Table table{{"name", "value"}, {{std::string("a,\"b\""), std::string("1.5")}, {std::string("c"), std::nullopt}},
              {false, true}};
  EXPECT_EQ(format_table(table, TableFormat::csv), "name,value\n\"a,\"\"b\"\"\",1.5\nc,\n");
  EXPECT_EQ(format_table(table, TableFormat::json),
            "[\n {\"name\": \"a,\\\"b\\\"\", \"value\": 1.5},\n {\"name\": \"c\", \"value\": null}\n]\n");
  EXPECT_EQ(format_table(table, TableFormat::markdown),
            "| name  | value |\n| ----- | ----: |\n| a,\"b\" |   1.5 |\n| c     |     - |\n");
  EXPECT_EQ(format_table(table, TableFormat::table), "name   value\n-----  -----\na,\"b\"    1.5\nc          -\n");
  EXPECT_THROW(parse_table_format("xml"), Error);
}

TEST(RunReport, ShowsConfigurationHistoryKidAndArtifacts) {
  difflab::test::TempDir dir;
  ResultsStore store(dir / "results.sqlite");
  fill(store);
  std::string report = run_report(store, 2, TableFormat::table);
  EXPECT_NE(report.find("# run 2 (finished)"), std::string::npos) << report;
  EXPECT_NE(report.find("[loss]\nplugin = \"mse\""), std::string::npos);
  EXPECT_NE(report.find("epoch  step  n_loss"), std::string::npos) << report;
  EXPECT_NE(report.find("per_batch"), std::string::npos);
  EXPECT_THROW(run_report(store, 9, TableFormat::table), Error);
}

namespace {
// Three seeds of mae and two of mse, with known best KIDs and final losses; one failed mse run.
void fill_seeds(ResultsStore& store) {
  const std::vector<std::tuple<std::string, int64_t, double>> runs = {
      {"mae", 1, 0.10}, {"mae", 2, 0.20}, {"mae", 3, 0.40}, {"mse", 1, 0.30}, {"mse", 2, 0.50}};
  for (const auto& [loss, seed, kid] : runs) {
    Experiment experiment = parse_experiment(
        "", "exp.toml", {"loss.plugin=" + loss, "experiment.seed=" + std::to_string(seed)}, difflab::test::registry());
    int64_t run_id = store.start_run(experiment, "{}", "loss.plugin='" + loss + "'");
    store.record_epoch(run_id, 1, 10, {{"n_loss", kid * 2}, {"val_n_loss", kid * 3}}, {},
                       KidRecord{kid, 0.0, "per_batch", "pixels", "ddim", 5, 64, 64});
    store.finish_run(run_id);
  }
  Experiment failed = parse_experiment("", "exp.toml", {"loss.plugin=mse", "experiment.seed=3"}, difflab::test::registry());
  store.close_run(store.start_run(failed, "{}"), RunStatus::failed, "out of memory");
}

double cell_number(const Table& table, size_t row, const std::string& column) {
  const size_t index = static_cast<size_t>(std::find(table.columns.begin(), table.columns.end(), column) - table.columns.begin());
  EXPECT_LT(index, table.columns.size()) << column;
  return std::stod(*table.rows[row][index]);
}
}  // namespace

TEST(RunsTable, GroupByGivesMeanStdAndCountOfFinishedRunsMatchingTheAblationView) {
  difflab::test::TempDir dir;
  ResultsStore store(dir / "results.sqlite");
  fill_seeds(store);
  RunsQuery query;
  query.group_by = {"loss.plugin"};
  query.split_std = true;
  Table table = runs_table(store, query);
  ASSERT_EQ(table.rows.size(), 2u);
  EXPECT_EQ(*table.rows[0][0], "mae");
  // Sample mean and standard deviation (n - 1), computed here in float64 from the definition.
  const std::vector<double> mae = {0.10, 0.20, 0.40};
  const double mean = (mae[0] + mae[1] + mae[2]) / 3;
  const double std = std::sqrt((std::pow(mae[0] - mean, 2) + std::pow(mae[1] - mean, 2) + std::pow(mae[2] - mean, 2)) / 2);
  EXPECT_EQ(cell_number(table, 0, "runs"), 3);
  EXPECT_NEAR(cell_number(table, 0, "best_kid_mean"), mean, 1e-6);
  EXPECT_NEAR(cell_number(table, 0, "best_kid_std"), std, 1e-6);
  EXPECT_NEAR(cell_number(table, 0, "n_loss_mean"), 2 * mean, 1e-6);
  EXPECT_EQ(cell_number(table, 1, "runs"), 2);  // the failed mse run is not averaged
  EXPECT_NEAR(cell_number(table, 1, "best_kid_std"), std::sqrt(0.02), 1e-6);

  // The SQL view gives the same numbers to sqlite3 and pandas users.
  SQLite::Statement view(store.database(), "SELECT variant, runs, seeds, best_kid_mean, best_kid_std, "
                                           "val_n_loss_mean FROM ablation ORDER BY best_kid_mean");
  ASSERT_TRUE(view.executeStep());
  EXPECT_EQ(view.getColumn(0).getString(), "loss.plugin='mae'");
  EXPECT_EQ(view.getColumn(1).getInt(), 3);
  EXPECT_EQ(view.getColumn(2).getString(), "1 2 3");
  EXPECT_NEAR(view.getColumn(3).getDouble(), mean, 1e-12);
  EXPECT_NEAR(view.getColumn(4).getDouble(), std, 1e-12);
  EXPECT_NEAR(view.getColumn(5).getDouble(), 3 * mean, 1e-12);

  // For reading: "mean ± std" in one cell, sortable by its mean; filters apply before grouping.
  query.split_std = false;
  query.sort = "-best_kid";
  query.where = "experiment.seed <= 2";
  Table readable = runs_table(store, query);
  EXPECT_EQ(*readable.rows[0][0], "mse");
  EXPECT_EQ(*readable.rows[0][2], "0.4 ± 0.14");
  EXPECT_EQ(*readable.rows[1][2], "0.15 ± 0.071");
  query.group_by = {"loss.plugn"};
  EXPECT_THROW(runs_table(store, query), Error);
}

TEST(RunsTable, WhereSelectsRunsAndShowsWhatVariesAmongThem) {
  difflab::test::TempDir dir;
  ResultsStore store(dir / "results.sqlite");
  fill_seeds(store);
  RunsQuery query;
  query.where = "loss.plugin = 'mse' and status = 'finished'";
  Table table = runs_table(store, query);
  ASSERT_EQ(table.rows.size(), 2u);
  EXPECT_EQ(table.columns[2], "experiment.seed");
  EXPECT_EQ(std::count(table.columns.begin(), table.columns.end(), "loss.plugin"), 0);  // the same in both
  query.where = "kid < 0.25 or status = \"failed\"";
  EXPECT_EQ(runs_table(store, query).rows.size(), 3u);
}

// --baseline: two losses x four seeds; each seed's runs share a seed effect, so the comparison is
// paired by seed. The mse group's cells are its difference of means to the mae group, the paired
// bootstrap interval and Welch's p (statistics.h computes them; here: that they reach the table,
// in both formats, and that a baseline filter must pick exactly one group).
TEST(RunsTable, BaselineAddsEachGroupsDifferenceWithItsIntervalAndWelchP) {
  difflab::test::TempDir dir;
  ResultsStore store(dir / "results.sqlite");
  const double seed_effect[] = {0.05, -0.03, 0.11, 0.0};
  for (const std::string loss : {"mae", "mse"})
    for (int seed = 1; seed <= 4; ++seed) {
      Experiment experiment = parse_experiment("", "exp.toml", {"loss.plugin=" + loss, "experiment.seed=" + std::to_string(seed)},
                                               difflab::test::registry());
      const int64_t run_id = store.start_run(experiment, "{}");
      const double kid = 0.2 + seed_effect[seed - 1] + (loss == "mse" ? 0.04 + 0.001 * seed : 0.0);
      store.record_epoch(run_id, 1, 10, {{"n_loss", 0.5}}, {}, KidRecord{kid, 0.0, "per_batch", "pixels", "ddim", 5, 64, 64});
      store.finish_run(run_id);
    }
  RunsQuery query;
  query.group_by = {"loss.plugin"};
  query.baseline = "loss.plugin = \"mae\"";
  const Table table = runs_table(store, query);
  const auto column = [&](const std::string& name) {
    return static_cast<size_t>(std::find(table.columns.begin(), table.columns.end(), name) - table.columns.begin());
  };
  ASSERT_LT(column("best_kid vs baseline"), table.columns.size());
  ASSERT_EQ(table.rows.size(), 2u);
  EXPECT_EQ(*table.rows[0][column("best_kid vs baseline")], "baseline");
  const std::string cell = *table.rows[1][column("best_kid vs baseline")];
  // mse − mae = 0.04 + 0.001 · seed: mean 0.0425, every resample in [0.041, 0.044].
  EXPECT_EQ(cell.rfind("+0.0425 [+0.04", 0), 0u) << cell;
  EXPECT_NE(cell.find("] paired p="), std::string::npos) << cell;

  query.split_std = true;  // csv, json: numbers in columns of their own
  const Table split = runs_table(store, query);
  const auto at = [&](const std::string& name) {
    return *split.rows[1][static_cast<size_t>(std::find(split.columns.begin(), split.columns.end(), name) - split.columns.begin())];
  };
  EXPECT_NEAR(std::stod(at("best_kid_diff")), 0.0425, 1e-12);
  EXPECT_GE(std::stod(at("best_kid_ci_low")), 0.041);
  EXPECT_LE(std::stod(at("best_kid_ci_high")), 0.044);
  EXPECT_GT(std::stod(at("best_kid_p")), 0.0);

  RunsQuery both = query;
  both.baseline = "best_kid > 0";
  EXPECT_THROW(runs_table(store, both), Error);  // matches both groups
}
