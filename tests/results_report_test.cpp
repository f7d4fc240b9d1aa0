// `difflab results` tables: the parameters that vary between runs, sorting, and each format.
#include "difflab/experiment.h"
#include "difflab/results_report.h"
#include "difflab/results_store.h"
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

  Table by_kid = runs_table(store, "best_kid", 2);
  ASSERT_EQ(by_kid.rows.size(), 2u);
  EXPECT_EQ(*by_kid.rows[0][0], "2");
  EXPECT_EQ(*by_kid.rows[1][0], "1");
  EXPECT_EQ(*runs_table(store, "-n_loss").rows[0][0], "2");
  EXPECT_THROW(runs_table(store, "kidd"), Error);
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
