// difflab report: the SVG geometry, the report's views on databases built row by row (empty,
// failed only, one run, seeds, samplers), bad input, --watch, and the ablation example's report
// in a real browser (Debian's chromium, headless).
#include <SQLiteCpp/SQLiteCpp.h>
#include <cmath>
#include <fmt/format.h>
#include <fstream>
#include <limits>
#include <set>
#include <stb_image.h>

#include "config/experiment.h"
#include "difflab/cache.h"
#include "difflab/error.h"
#include "report/html_report.h"
#include "report/svg.h"
#include "results/results_store.h"
#include "results/sweep_progress.h"
#include "test_support.h"

using namespace difflab;
namespace fs = std::filesystem;
using difflab::test::difflab_command;
using difflab::test::Outcome;
using difflab::test::TempDir;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

size_t occurrences(const std::string& text, const std::string& needle) {
  size_t found = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++found;
  return found;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

Experiment experiment(const std::vector<std::string>& overrides) {
  return parse_experiment("[experiment]\nname = \"report-test\"\n", "exp.toml", overrides, difflab::test::registry());
}

// A finished run with `epochs` epochs: n_loss = base / epoch, val_kid = base / (10 epoch).
int64_t finished_run(ResultsStore& store, const std::vector<std::string>& overrides, double base, int64_t epochs,
                     const std::string& sampler = "ddim", int64_t nfe = 0) {
  const int64_t id = store.start_run(experiment(overrides), "{}");
  for (int64_t epoch = 1; epoch <= epochs; ++epoch) {
    const double kid = base / (10.0 * static_cast<double>(epoch));
    store.record_epoch(id, epoch, epoch * 10, {{"n_loss", base / static_cast<double>(epoch)}, {"val_kid", kid}}, {},
                       KidRecord{kid, 0.0, "per_batch", "pixels", sampler, nfe, 8, 8, nfe});
  }
  store.finish_run(id);
  return id;
}

// The charts of a report: (data-chart, its markup). (Plain string search: libstdc++'s std::regex
// recurses per character and overflows the stack on a page of base64 images.)
std::vector<std::pair<std::string, std::string>> charts(const std::string& html) {
  std::vector<std::pair<std::string, std::string>> found;
  const std::string open = "<svg class=\"chart\" data-chart=\"";
  for (size_t at = html.find(open); at != std::string::npos; at = html.find(open, at + 1)) {
    const size_t name = at + open.size();
    found.emplace_back(html.substr(name, html.find('"', name) - name), html.substr(at, html.find("</svg>", at) - at));
  }
  return found;
}

// The epochs of the grid images shown (not hidden) in a page.
std::vector<std::string> shown_grid_epochs(const std::string& html) {
  std::vector<std::string> epochs;
  const std::string open = "<img class=\"grid\" data-epoch=\"";
  for (size_t at = html.find(open); at != std::string::npos; at = html.find(open, at + 1)) {
    const std::string tag = html.substr(at, html.find('>', at) - at);
    if (tag.find(" hidden") != std::string::npos) continue;
    const size_t epoch = at + open.size();
    epochs.push_back(html.substr(epoch, html.find('"', epoch) - epoch));
  }
  return epochs;
}

std::string chart(const std::string& html, const std::string& id) {
  for (const auto& [name, markup] : charts(html))
    if (name == id) return markup;
  return "";
}

}  // namespace

TEST(Svg, LinearAxisCoversTheValuesWithRoundTicks) {
  const svg::Axis axis = svg::make_axis({0.13, 0.87, kNaN}, false, "x");
  EXPECT_LE(axis.lo, 0.13);
  EXPECT_GE(axis.hi, 0.87);
  ASSERT_EQ(axis.ticks.size(), 9u);  // a range of 0.74 in about 5 steps: steps of 0.1
  for (size_t i = 0; i < axis.ticks.size(); ++i) EXPECT_NEAR(axis.ticks[i], 0.1 * static_cast<double>(i + 1), 1e-12);
  EXPECT_DOUBLE_EQ(axis.fraction(axis.lo), 0.0);
  EXPECT_DOUBLE_EQ(axis.fraction(axis.hi), 1.0);
  EXPECT_DOUBLE_EQ(axis.fraction(0.5), 0.5);
  EXPECT_DOUBLE_EQ(axis.lo, 0.1);
  EXPECT_DOUBLE_EQ(axis.hi, 0.9);
  // One value: a range around it; none: [0, 1].
  const svg::Axis single = svg::make_axis({5.0, 5.0}, false, "x");
  EXPECT_LT(single.lo, 5.0);
  EXPECT_GT(single.hi, 5.0);
  const svg::Axis none = svg::make_axis({kNaN, std::numeric_limits<double>::infinity()}, false, "x");
  EXPECT_EQ(none.lo, 0.0);
  EXPECT_EQ(none.hi, 1.0);
  // Epochs: whole numbers only.
  const svg::Axis epochs = svg::make_axis({1, 2, 3}, false, "epoch", 5, true);
  EXPECT_EQ(epochs.ticks, (std::vector<double>{1, 2, 3}));
}

TEST(Svg, LogAxisSpansDecadesAndLeavesOutNonPositiveValues) {
  const svg::Axis axis = svg::make_axis({0.002, 0.5, 0.0, -1.0}, true, "y");
  EXPECT_DOUBLE_EQ(axis.lo, 0.001);
  EXPECT_DOUBLE_EQ(axis.hi, 1.0);
  EXPECT_EQ(axis.ticks, (std::vector<double>{0.001, 0.01, 0.1, 1.0}));
  EXPECT_NEAR(axis.fraction(0.01), 1.0 / 3.0, 1e-12);
  // Less than three decades: 2 and 5 times each power too.
  const svg::Axis narrow = svg::make_axis({3.0, 40.0}, true, "y");
  EXPECT_EQ(narrow.ticks, (std::vector<double>{1, 2, 5, 10, 20, 50, 100}));
  EXPECT_EQ(svg::tick_text(0.1 + 0.2), "0.3");
  EXPECT_EQ(svg::tick_text(1e-5), "1e-05");
}

TEST(Svg, BandsOnlyWhereGivenAndNonFiniteValuesLeftOutWithANote) {
  svg::Chart chart;
  chart.id = "c";
  chart.series.push_back({"with band", "", {1, 2, 3}, {1, 2, 3}, {0.5, 1.5, 2.5}, {1.5, 2.5, 3.5}, svg::Style::lines});
  chart.series.push_back({"plain", "", {1, 2, 3, 4}, {2, kNaN, std::numeric_limits<double>::infinity(), 4}, {}, {},
                          svg::Style::lines});
  const svg::Rendered rendered = svg::render(chart);
  EXPECT_EQ(rendered.series_drawn, 2);
  EXPECT_EQ(rendered.bands_drawn, 1);
  EXPECT_EQ(occurrences(rendered.markup, "class=\"band\""), 1u);
  EXPECT_EQ(rendered.skipped, 2);
  EXPECT_NE(rendered.markup.find("2 non-finite values not drawn"), std::string::npos);
  // The broken line is two pieces: it restarts after the gap.
  const size_t plain = rendered.markup.find("data-series=\"plain\"");
  const size_t path = rendered.markup.find("class=\"line\" d=\"", plain);
  const std::string d = rendered.markup.substr(path, rendered.markup.find('"', path + 16) - path);
  EXPECT_EQ(occurrences(d, "M"), 2u) << d;
  // Log axis: zero is not drawable either.
  chart.log_y = true;
  chart.series = {{"s", "", {1, 2}, {0.0, 1.0}, {}, {}, svg::Style::points}};
  EXPECT_NE(svg::render(chart).markup.find("1 non-finite or non-positive value not drawn"), std::string::npos);
  chart.series = {};
  EXPECT_NE(svg::render(chart).markup.find("no values to draw"), std::string::npos);
}

TEST(Svg, PointsAndErrorBarsLandWhereTheAxesPutThem) {
  svg::Chart chart;
  chart.id = "p";
  chart.series.push_back({"s", "#000000", {0, 10}, {0, 10}, {-1, 9}, {1, 11}, svg::Style::points});
  const svg::Rendered rendered = svg::render(chart, 640, 360);
  // Plot area: x from 64 to 628, y from 316 (bottom) to 28; axes [0, 12] (ticks at 2s... or the
  // round range around [-1, 11]).
  const svg::Axis x = svg::make_axis({0, 10}, false, "");
  const svg::Axis y = svg::make_axis({0, 10, -1, 9, 1, 11}, false, "");
  const double cx = 64 + x.fraction(10) * (628 - 64), cy = 316 - y.fraction(10) * (316 - 28);
  EXPECT_NE(rendered.markup.find(fmt::format("cx=\"{:.1f}\" cy=\"{:.1f}\"", cx, cy)), std::string::npos)
      << rendered.markup;
  EXPECT_EQ(occurrences(rendered.markup, "class=\"errorbar\""), 1u);
}

TEST(Svg, ParallelCoordinatesLeaveOutRowsWithAMissingValue) {
  const svg::Rendered rendered = svg::render_parallel(
      "pc", "t", {{"a", {0, 1, 2}, {}}, {"b", {0, 1, kNaN}, {}}, {"c", {1, 0, 0}, {"x", "y"}}}, {0.1, 0.3, 0.2},
      {"r1", "r2", "r3"});
  EXPECT_EQ(rendered.series_drawn, 2);
  EXPECT_EQ(rendered.skipped, 1);
  EXPECT_NE(rendered.markup.find(svg::colormap(0.0)), std::string::npos);
  EXPECT_NE(rendered.markup.find(svg::colormap(1.0)), std::string::npos);
  EXPECT_EQ(svg::colormap(0.0), "#440154");
  EXPECT_EQ(svg::colormap(1.0), "#fde725");
}

TEST(Report, AnEmptyDatabaseIsAPageThatSaysSo) {
  TempDir dir;
  { ResultsStore create(dir / "empty.sqlite"); }
  ResultsStore store(dir / "empty.sqlite", OpenMode::read_only);
  ReportSummary summary;
  const std::string html = render_report(store, {}, &summary);
  EXPECT_EQ(summary.runs, 0);
  EXPECT_EQ(summary.charts, 0);
  EXPECT_NE(html.find("no runs"), std::string::npos);
  EXPECT_EQ(html.rfind("</html>\n"), html.size() - 8);
}

TEST(Report, AFailedOnlyDatabaseListsTheFailuresAndDrawsNothing) {
  TempDir dir;
  ResultsStore store(dir / "r.sqlite");
  for (int seed = 0; seed < 2; ++seed) {
    const int64_t id = store.start_run(experiment({"experiment.seed=" + std::to_string(seed)}), "{}");
    store.close_run(id, RunStatus::failed, fmt::format("out of memory <{}>", seed));
  }
  ReportSummary summary;
  const std::string html = render_report(store, {}, &summary);
  EXPECT_EQ(summary.runs, 2);
  EXPECT_EQ(summary.charts, 0);
  EXPECT_NE(html.find("Failures"), std::string::npos);
  EXPECT_NE(html.find("out of memory &lt;1&gt;"), std::string::npos);  // escaped
  EXPECT_NE(html.find("2 failed"), std::string::npos);
}

TEST(Report, ASingleRunHasCurvesWithoutBandsAndNoComparisons) {
  TempDir dir;
  ResultsStore store(dir / "r.sqlite");
  finished_run(store, {}, 1.0, 3);
  ReportSummary summary;
  const std::string html = render_report(store, {}, &summary);
  const std::string curve = chart(html, "curve-n_loss");
  ASSERT_FALSE(curve.empty());
  EXPECT_EQ(occurrences(curve, "<g class=\"series\""), 1u);
  EXPECT_EQ(occurrences(html, "class=\"band\""), 0u);
  EXPECT_EQ(chart(html, "kid-nfe"), "");
  EXPECT_EQ(chart(html, "parallel"), "");
  EXPECT_EQ(html.find("id=\"effects\""), std::string::npos);
}

// --baseline-group: the grouped table gains each group's difference to the baseline group, with its
// bootstrap interval and Welch's p (the numbers: tests/results/statistics_test.cpp and
// results_report_test.cpp); a filter that picks no group is a config error naming the option.
TEST(Report, TheGroupedTableShowsEachGroupsDifferenceToTheBaselineGroup) {
  TempDir dir;
  ResultsStore store(dir / "r.sqlite");
  for (const std::string loss : {"mae", "mse"})
    for (int seed = 0; seed < 3; ++seed)
      finished_run(store, {"loss.plugin=" + loss, "experiment.seed=" + std::to_string(seed)},
                   1.0 + (loss == "mse") * 0.5 + 0.1 * seed, 2);
  ReportOptions options;
  options.group_by = {"loss.plugin"};
  options.baseline_group = "loss.plugin = \"mae\"";
  const std::string html = render_report(store, options);
  EXPECT_NE(html.find("best_kid vs baseline"), std::string::npos);
  EXPECT_NE(html.find(">baseline<"), std::string::npos);
  // mse − mae: n_loss 0.5/2 = 0.25 at the last epoch for every seed: paired, the interval a point.
  EXPECT_NE(html.find("+0.25 [+0.25, +0.25] paired p="), std::string::npos) << html.substr(html.find("grouped"), 3000);
  ReportOptions none = options;
  none.baseline_group = "loss.plugin = \"huber\"";
  EXPECT_THROW(render_report(store, none), Error);
}

TEST(Report, GroupsOverSeedsGetABandAndTheSweptAxesTheirCharts) {
  TempDir dir;
  ResultsStore store(dir / "r.sqlite");
  for (const std::string loss : {"mae", "mse"})
    for (const std::string schedule : {"cosine", "linear"})
      for (int seed = 0; seed < 2; ++seed)
        finished_run(store, {"loss.plugin=" + loss, "schedule.plugin=" + schedule, "experiment.seed=" + std::to_string(seed)},
                     1.0 + (loss == "mse") + 0.1 * seed + (schedule == "linear") * 0.5, 4);
  ReportSummary summary;
  const std::string html = render_report(store, {}, &summary);
  for (const char* key : {"curve-n_loss", "curve-val_kid"}) {
    const std::string curve = chart(html, key);
    EXPECT_EQ(occurrences(curve, "<g class=\"series\""), 4u) << key;
    EXPECT_EQ(occurrences(curve, "class=\"band\""), 4u) << key;
  }
  EXPECT_EQ(occurrences(chart(html, "effect-loss.plugin"), "<circle"), 8u + 2u);  // runs and the two means
  EXPECT_EQ(occurrences(chart(html, "parallel"), "<g class=\"series\""), 8u);
  // The grouped table: four groups of two.
  EXPECT_NE(html.find("id=\"grouped\""), std::string::npos);
  // Grouped by one key only: two lines, bands over four runs each.
  ReportOptions by_loss;
  by_loss.group_by = {"loss.plugin"};
  EXPECT_EQ(occurrences(chart(render_report(store, by_loss), "curve-n_loss"), "<g class=\"series\""), 2u);
  // The baseline is the best run by KID: run 1 (mae, cosine, seed 0); others' differences are marked.
  EXPECT_NE(html.find("Best by best KID: <a href=\"#run-1\">run 1</a>"), std::string::npos);
  EXPECT_GE(occurrences(html, "<tr class=\"diff\">"), 7u);
  // --where narrows the runs.
  ReportOptions only_mae;
  only_mae.where = "loss.plugin = \"mae\"";
  ReportSummary mae;
  render_report(store, only_mae, &mae);
  EXPECT_EQ(mae.runs, 4);
}

TEST(Report, KidAgainstNetworkEvaluationsHasOneLinePerSamplerWithSeedErrorBars) {
  TempDir dir;
  ResultsStore store(dir / "r.sqlite");
  for (const std::string sampler : {"ddim", "ddpm"})
    for (int steps : {2, 4, 8})
      for (int seed = 0; seed < 2; ++seed)
        finished_run(store, {"sampler.plugin=" + sampler, "evaluation.kid_diffusion_steps=" + std::to_string(steps),
                             "experiment.seed=" + std::to_string(seed)},
                     1.0 / steps + 0.01 * seed, 1, sampler, steps);
  const std::string html = render_report(store, {});
  const std::string kid = chart(html, "kid-nfe");
  ASSERT_FALSE(kid.empty());
  EXPECT_EQ(occurrences(kid, "<g class=\"series\""), 2u);
  EXPECT_NE(kid.find("data-series=\"ddim\""), std::string::npos);
  EXPECT_EQ(occurrences(kid, "<circle"), 6u);
}

TEST(Report, BadOptionsAreConfigErrorsNamingThem) {
  TempDir dir;
  ResultsStore store(dir / "r.sqlite");
  finished_run(store, {}, 1.0, 2);
  ReportOptions typo;
  typo.group_by = {"loss.plugn"};
  try {
    render_report(store, typo);
    ADD_FAILURE() << "no error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("did you mean \"loss.plugin\""), std::string::npos) << error.what();
  }
  ReportOptions baseline;
  baseline.baseline = 99;
  EXPECT_THROW(render_report(store, baseline), Error);
  ReportOptions where;
  where.where = "loss.plugin = ";
  EXPECT_THROW(render_report(store, where), Error);
  ReportOptions metric;
  metric.metric = "val_nothing";
  EXPECT_THROW(render_report(store, metric), Error);
}

TEST(ReportCommand, RefusesAFileThatIsNotADatabaseAndReadsOldAndReadOnlyOnesWithoutWriting) {
  TempDir dir;
  std::ofstream(dir / "notes.sqlite") << "not a database\n";
  const Outcome foreign = difflab_command("report " + (dir / "notes.sqlite").string() + " --out " + (dir / "a.html").string());
  EXPECT_EQ(foreign.exit_code, 2) << foreign.output;
  EXPECT_FALSE(fs::exists(dir / "a.html"));

  // A version-6 database (before attempt ids), read-only on disk.
  {
    ResultsStore store(dir / "old.sqlite");
    finished_run(store, {}, 1.0, 2);
    store.database().exec("DROP INDEX runs_by_attempt; ALTER TABLE runs DROP COLUMN attempt; "
                          "ALTER TABLE runs DROP COLUMN world_size; ALTER TABLE runs DROP COLUMN backend; "
                          "DELETE FROM schema_info WHERE version > 6; PRAGMA wal_checkpoint(TRUNCATE)");
  }
  fs::permissions(dir / "old.sqlite", fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
  const std::string before = read_text(dir / "old.sqlite");
  const Outcome old = difflab_command("report " + (dir / "old.sqlite").string() + " --out " + (dir / "b.html").string());
  ASSERT_EQ(old.exit_code, 0) << old.output;
  EXPECT_NE(old.output.find("1 runs, 2 charts"), std::string::npos) << old.output;
  EXPECT_EQ(read_text(dir / "old.sqlite"), before);
  SQLite::Database db((dir / "old.sqlite").string(), SQLite::OPEN_READONLY);
  EXPECT_EQ(db.execAndGet("SELECT MAX(version) FROM schema_info").getInt(), 6);
}

TEST(ReportCommand, WatchRewritesTheReportUntilInterrupted) {
  TempDir dir;
  {
    ResultsStore store(dir / "r.sqlite");
    finished_run(store, {}, 1.0, 2);
  }
  const fs::path out = dir / "watched.html";
  const Outcome started = difflab::test::shell_command(
      fmt::format("{} report {} --out {} --watch 1 > {} 2>&1 & echo $!", DIFFLAB_TEST_EXECUTABLE,
                  (dir / "r.sqlite").string(), out.string(), (dir / "log.txt").string()));
  const pid_t pid = static_cast<pid_t>(std::stol(started.output));
  for (int i = 0; i < 100 && occurrences(read_text(dir / "log.txt"), "wrote ") < 2; ++i) usleep(100000);
  EXPECT_GE(occurrences(read_text(dir / "log.txt"), "wrote "), 2u) << read_text(dir / "log.txt");
  kill(pid, SIGINT);
  for (int i = 0; i < 50 && kill(pid, 0) == 0; ++i) usleep(100000);
  EXPECT_NE(kill(pid, 0), 0) << "still running after SIGINT";
  const std::string html = read_text(out);
  EXPECT_NE(html.find("<meta http-equiv=\"refresh\" content=\"1\">"), std::string::npos);
  EXPECT_EQ(html.rfind("</html>\n"), html.size() - 8);
  // Only the report itself is in the folder: the rewrites leave no temporary file behind.
  for (const auto& entry : fs::directory_iterator(dir.path()))
    EXPECT_TRUE(entry.path().extension() != ".tmp" && entry.path().string().find(".part") == std::string::npos)
        << entry.path();
}

namespace {

// Headless chromium: its output (stdout and stderr, with the page's console messages).
Outcome chromium(const std::string& arguments) {
  return difflab::test::shell_command("timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars "
                                      "--enable-logging=stderr --v=0 --host-resolver-rules='MAP * ~NOTFOUND' " +
                                      arguments);
}

}  // namespace

TEST(ReportBrowser, TheAblationReportWorksOfflineInChromium) {
  if (difflab::test::shell_command("command -v chromium").exit_code != 0)
    GTEST_SKIP() << "chromium is not installed (tools/install_deps.sh installs it)";
  const Outcome blank = chromium("--dump-dom about:blank");
  if (blank.output.find("<html>") == std::string::npos) GTEST_SKIP() << "chromium cannot start here: " << blank.output;
  TempDir dir;
  // The ablation example (loss x schedule x 2 seeds), made tiny.
  const Outcome trained = difflab_command(
      "run " + std::string(DIFFLAB_TEST_SOURCE_DIR) + "/experiments/ablation_loss_schedule.toml --set "
      "experiment.database=" + (dir / "ablation.sqlite").string() + " --set experiment.output_dir=" +
      (dir / "runs").string() + " --set data.plugin=synthetic --set data.image_size=16 --set features.plugin=pixels "
      "--set training.steps_per_epoch=2 --set training.epochs=3 --set training.batch_size=16 --set "
      "evaluation.kid_batches=1 --set evaluation.plot_diffusion_steps=2 --set evaluation.kid_diffusion_steps=2 "
      "--set evaluation.validation_batches=1 --set network.widths=[8,16] --set network.block_depth=1 "
      "--set experiment.precision=fp32 --set experiment.channels_last=false --set experiment.threads=1 --workers 2");
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  const fs::path report = dir / "report.html";
  const Outcome written = difflab_command("report " + (dir / "ablation.sqlite").string() + " --out " + report.string());
  ASSERT_EQ(written.exit_code, 0) << written.output;
  const std::string html = read_text(report);
  // Nothing to fetch: no remote or local resource besides the page (images are data: URIs).
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);
  EXPECT_EQ(html.find("href=\"http"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(occurrences(html, "src=\"data:image/png;base64,"), 24u);

  const Outcome dom = chromium("--dump-dom file://" + report.string());
  ASSERT_NE(dom.output.find("data-ready=\"true\""), std::string::npos) << "scripts did not run:\n" << dom.output.substr(0, 3000);
  EXPECT_EQ(dom.output.find(":CONSOLE"), std::string::npos) << "console messages:\n" << dom.output.substr(0, 3000);
  // Six learning curves (n_loss, val_n_loss, i_loss, val_i_loss, val_kid, loss) of four groups,
  // two one-factor charts and the parallel coordinates of eight runs.
  const auto drawn = charts(dom.output);
  EXPECT_EQ(drawn.size(), 9u);
  for (const auto& [id, markup] : drawn) {
    const size_t series = occurrences(markup, "<g class=\"series\"");
    if (id.rfind("curve-", 0) == 0) {
      EXPECT_EQ(series, 4u) << id;
      EXPECT_EQ(occurrences(markup, "class=\"band\""), 4u) << id;  // two seeds a group
    } else if (id == "parallel") {
      EXPECT_EQ(series, 8u) << id;
    } else {
      EXPECT_EQ(series, 2u) << id;  // runs and their means
    }
  }
  EXPECT_EQ(occurrences(dom.output, "<figure class=\"grids\""), 8u);

  // The epoch slider's code path, driven by #epoch=1: every run shows its epoch-1 grid.
  const Outcome first_epoch = chromium("--dump-dom 'file://" + report.string() + "#epoch=1'");
  EXPECT_EQ(occurrences(first_epoch.output, "epoch-label\">epoch 1<"), 8u);
  EXPECT_EQ(occurrences(first_epoch.output, "data-epoch=\"1\" src="), 8u);
  const std::vector<std::string> shown = shown_grid_epochs(first_epoch.output);
  EXPECT_EQ(shown, std::vector<std::string>(8, "1"));
  EXPECT_EQ(shown_grid_epochs(dom.output), std::vector<std::string>(8, "3"));  // without it: the last

  // A screenshot that is not blank: many colours, and far from all white.
  const fs::path shot = dir / "report.png";
  chromium("--window-size=1400,2400 --screenshot=" + shot.string() + " file://" + report.string());
  int width = 0, height = 0, channels = 0;
  unsigned char* pixels = stbi_load(shot.c_str(), &width, &height, &channels, 3);
  ASSERT_NE(pixels, nullptr) << "no screenshot";
  size_t not_white = 0;
  std::set<uint32_t> colours;
  for (int i = 0; i < width * height; ++i) {
    const unsigned char* p = pixels + 3 * i;
    if (p[0] < 240 || p[1] < 240 || p[2] < 240) ++not_white;
    colours.insert((uint32_t{p[0]} << 16) | (uint32_t{p[1]} << 8) | p[2]);
  }
  stbi_image_free(pixels);
  EXPECT_EQ(width, 1400);
  EXPECT_GT(static_cast<double>(not_white) / (width * height), 0.03);
  EXPECT_GT(colours.size(), 50u);
}

// The rung view of an adaptive sweep: one line per trial, the pruned ones faded and ending at
// their rung, each rung's cutoffs marked; the overview says what pruning saved.
TEST(ReportBrowser, TheRungViewOfAnAdaptiveSweepWorksInChromium) {
  if (difflab::test::shell_command("command -v chromium").exit_code != 0)
    GTEST_SKIP() << "chromium is not installed (tools/install_deps.sh installs it)";
  const Outcome blank = chromium("--dump-dom about:blank");
  if (blank.output.find("<html>") == std::string::npos) GTEST_SKIP() << "chromium cannot start here: " << blank.output;
  TempDir dir;
  std::ofstream(dir / "asha.toml") << read_text(difflab::test::tiny_experiment())
                                   << "\n[sweep]\nmethod = \"asha\"\ntrials = 6\nseed = 2\nmetric = \"val_n_loss\"\n"
                                      "min_epochs = 1\nreduction_factor = 2\n"
                                      "\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }\n";
  const Outcome trained = difflab_command("run " + (dir / "asha.toml").string() + " --set experiment.database=" +
                                          (dir / "a.sqlite").string() + " --set experiment.output_dir=" +
                                          (dir / "runs").string() + " --set training.epochs=4 --set experiment.threads=1 "
                                          "--set evaluation.kid_protocol=none");
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  difflab::ResultsStore store(dir / "a.sqlite", difflab::OpenMode::read_only);
  std::map<int64_t, int64_t> last_epoch;
  int64_t pruned = 0;
  for (const auto& run : store.runs()) {
    for (const auto& metric : store.metrics(run.id)) last_epoch[run.id] = std::max(last_epoch[run.id], metric.epoch);
    pruned += run.status == difflab::RunStatus::pruned;
  }
  std::set<int64_t> rungs;
  for (const auto& decision : store.decisions()) rungs.insert(decision.rung);
  ASSERT_GT(pruned, 0) << trained.output;

  const fs::path report = dir / "report.html";
  ASSERT_EQ(difflab_command("report " + (dir / "a.sqlite").string() + " --out " + report.string()).exit_code, 0);
  const Outcome dom = chromium("--dump-dom file://" + report.string());
  ASSERT_NE(dom.output.find("data-ready=\"true\""), std::string::npos) << dom.output.substr(0, 3000);
  EXPECT_EQ(dom.output.find(":CONSOLE"), std::string::npos) << dom.output.substr(0, 3000);
  EXPECT_NE(dom.output.find(fmt::format("Pruning (asha) stopped {} of 6 trials early", pruned)), std::string::npos);
  EXPECT_NE(dom.output.find("<a href=\"#rungs\">rungs</a>"), std::string::npos);  // in the navigation too
  const auto drawn = charts(dom.output);
  const auto rung_chart = std::find_if(drawn.begin(), drawn.end(), [](const auto& c) { return c.first == "rungs"; });
  ASSERT_NE(rung_chart, drawn.end());
  const std::string& markup = rung_chart->second;
  EXPECT_EQ(occurrences(markup, "<g class=\"series\""), 6u + rungs.size());  // the trials, then the cutoffs
  EXPECT_EQ(occurrences(markup, "stroke=\"#c9c9c9\""), static_cast<size_t>(pruned));  // faded lines
  for (const auto& [run, epochs] : last_epoch) {
    // Each trial's line has a marker per epoch it trained: a pruned one ends at its rung.
    const std::string name = fmt::format("data-series=\"run {}", run);
    const size_t at = markup.find(name);
    ASSERT_NE(at, std::string::npos) << name;
    const std::string series = markup.substr(at, markup.find("</g>", at) - at);
    EXPECT_EQ(occurrences(series, "<circle"), static_cast<size_t>(epochs)) << series;
  }
  EXPECT_EQ(occurrences(markup, "data-series=\"cutoffs at rung"), rungs.size());
}

// The search view: a tpe + asha sweep and two random + asha sweeps (seeds) of one space in one
// database. sweep_progress's best-so-far equals the one computed here from the rows with SQL; the
// report draws every sweep's trials and best so far on one chart, and the mean ± std by sampler
// on another (a band for the sampler with two sweeps); `difflab sweep progress` prints them.
TEST(ReportBrowser, TheSearchViewComparesSamplersInChromium) {
  if (difflab::test::shell_command("command -v chromium").exit_code != 0)
    GTEST_SKIP() << "chromium is not installed (tools/install_deps.sh installs it)";
  const Outcome blank = chromium("--dump-dom about:blank");
  if (blank.output.find("<html>") == std::string::npos) GTEST_SKIP() << "chromium cannot start here: " << blank.output;
  TempDir dir;
  const std::string space = "trials = 6\nmetric = \"val_n_loss\"\nmin_epochs = 1\nreduction_factor = 2\n"
                            "\"training.learning_rate\" = { log_uniform = [1e-4, 0.3] }\n";
  const std::vector<std::string> sweeps = {"sampler = \"tpe\"\npruner = \"asha\"\nrandom_trials = 2\nseed = 1\n",
                                           "method = \"asha\"\nseed = 1\n", "method = \"asha\"\nseed = 2\n"};
  for (size_t i = 0; i < sweeps.size(); ++i) {
    const fs::path file = dir / fmt::format("sweep{}.toml", i);
    std::ofstream(file) << read_text(difflab::test::tiny_experiment()) << "\n[sweep]\n" << sweeps[i] << space;
    const Outcome trained = difflab_command("run " + file.string() + " --set experiment.database=" +
                                            (dir / "s.sqlite").string() + " --set experiment.output_dir=" +
                                            (dir / "runs").string() + " --set training.epochs=3 --set "
                                            "experiment.threads=1 --set evaluation.kid_protocol=none");
    ASSERT_EQ(trained.exit_code, 0) << trained.output;
  }
  difflab::ResultsStore store(dir / "s.sqlite", difflab::OpenMode::read_only);
  const std::vector<difflab::SweepProgress> progress = difflab::sweep_progress(store);
  ASSERT_EQ(progress.size(), 3u);
  SQLite::Database db((dir / "s.sqlite").string());
  int64_t pruned_trials = 0;
  for (const auto& sweep : progress) {
    EXPECT_EQ(sweep.label(), sweep.sampler == "tpe" ? "tpe + asha" : "random + asha");
    ASSERT_EQ(sweep.best_so_far.size(), 6u);
    // Each trial's value at its run's last epoch with the metric, and whether it finished.
    SQLite::Statement trials(db, "SELECT t.trial, r.status, (SELECT value FROM metrics m WHERE m.run_id = r.id AND "
                                 "m.key = 'val_n_loss' ORDER BY m.epoch DESC LIMIT 1) FROM sweep_trials t JOIN runs r "
                                 "ON r.id = t.run_id WHERE t.sweep = ? ORDER BY t.trial");
    trials.bind(1, sweep.sweep);
    double best = std::nan("");
    int64_t k = 0;
    while (trials.executeStep()) {
      ASSERT_EQ(trials.getColumn(0).getInt64(), k);
      if (trials.getColumn(1).getString() == "finished" && (std::isnan(best) || trials.getColumn(2).getDouble() < best))
        best = trials.getColumn(2).getDouble();
      pruned_trials += trials.getColumn(1).getString() == "pruned";
      if (std::isnan(best)) EXPECT_TRUE(std::isnan(sweep.best_so_far[k])) << k;
      else EXPECT_EQ(sweep.best_so_far[k], best) << sweep.label() << " trial " << k;
      ++k;
    }
    EXPECT_EQ(k, 6);
  }
  EXPECT_GT(pruned_trials, 0);
  const Outcome printed = difflab_command("sweep progress " + (dir / "s.sqlite").string());
  EXPECT_EQ(printed.exit_code, 0) << printed.output;
  EXPECT_NE(printed.output.find("random + asha                            2"), std::string::npos) << printed.output;
  EXPECT_NE(printed.output.find("tpe + asha                               1"), std::string::npos) << printed.output;

  const fs::path report = dir / "report.html";
  ASSERT_EQ(difflab_command("report " + (dir / "s.sqlite").string() + " --out " + report.string()).exit_code, 0);
  const Outcome dom = chromium("--dump-dom file://" + report.string());
  ASSERT_NE(dom.output.find("data-ready=\"true\""), std::string::npos) << dom.output.substr(0, 3000);
  EXPECT_EQ(dom.output.find(":CONSOLE"), std::string::npos) << dom.output.substr(0, 3000);
  EXPECT_NE(dom.output.find("<a href=\"#search\">search</a>"), std::string::npos);
  const auto drawn = charts(dom.output);
  const auto chart = [&](const std::string& id) {
    const auto found = std::find_if(drawn.begin(), drawn.end(), [&](const auto& c) { return c.first == id; });
    return found == drawn.end() ? std::string() : found->second;
  };
  const std::string trials = chart("search");
  ASSERT_FALSE(trials.empty());
  // Per sweep: its best so far and its finished trials; the pruned ones where it has any.
  EXPECT_EQ(occurrences(trials, ": best so far\""), 3u);
  EXPECT_EQ(occurrences(trials, ": finished trials\""), 3u);
  size_t with_pruned = 0;
  for (const auto& sweep : progress)
    with_pruned += std::any_of(sweep.outcomes.begin(), sweep.outcomes.end(),
                               [](const difflab::TrialOutcome& o) { return o.status == difflab::RunStatus::pruned; });
  EXPECT_EQ(occurrences(trials, ": pruned, at its rung\""), with_pruned);
  const std::string compared = chart("search-by-sampler");
  ASSERT_FALSE(compared.empty());
  EXPECT_EQ(occurrences(compared, "<g class=\"series\""), 2u);
  EXPECT_NE(compared.find("data-series=\"random + asha (2 sweeps)\""), std::string::npos) << compared;
  EXPECT_EQ(occurrences(compared, "class=\"band\""), 1u);  // over the two random sweeps only
}

// Every sample metric on (evaluation.metrics), a sweep of two seeds of the tiny experiment: each
// epoch records val_fid, val_precision, ... in metrics and in sample_metrics with what they
// compared; the first run computes the real side's features and caches them, the second reads
// them (its output says "read from" the same file, and the file is not written again); the report
// draws each metric against epochs and precision against recall, in chromium.
TEST(ReportBrowser, EverySampleMetricIsRecordedPerEpochCachedOnceAndDrawn) {
  if (difflab::test::shell_command("command -v chromium").exit_code != 0)
    GTEST_SKIP() << "chromium is not installed (tools/install_deps.sh installs it)";
  const Outcome blank = chromium("--dump-dom about:blank");
  if (blank.output.find("<html>") == std::string::npos) GTEST_SKIP() << "chromium cannot start here: " << blank.output;
  TempDir dir;
  std::ofstream(dir / "metrics.toml") << read_text(difflab::test::tiny_experiment())
                                      << "\n[sweep]\nseeds = [1, 2]\n";
  const Outcome trained = difflab_command(
      "run " + (dir / "metrics.toml").string() + " --set experiment.database=" + (dir / "m.sqlite").string() +
          " --set experiment.output_dir=" + (dir / "runs").string() + " --set training.epochs=2 --set "
          "experiment.threads=1 --set 'evaluation.metrics=[\"kid\", \"fid\", \"precision\", \"recall\", "
          "\"density\", \"coverage\"]' --set evaluation.best_by=val_fid",
      "XDG_CACHE_HOME=" + (dir / "cache").string());
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  EXPECT_EQ(occurrences(trained.output, "computed and cached in"), 1u) << trained.output;
  EXPECT_EQ(occurrences(trained.output, "read from " + (dir / "cache").string()), 1u) << trained.output;
  difflab::ResultsStore store(dir / "m.sqlite", difflab::OpenMode::read_only);
  const auto runs = store.runs();
  ASSERT_EQ(runs.size(), 2u);
  for (const auto& run : runs) {
    const auto samples = store.sample_metrics(run.id);
    ASSERT_EQ(samples.size(), 10u) << run.id;  // 5 metrics x 2 epochs
    std::map<std::string, std::set<int64_t>> epochs;
    for (const auto& [epoch, sample] : samples) {
      epochs[sample.metric].insert(epoch);
      EXPECT_EQ(sample.features, "pixels");
      EXPECT_EQ(sample.real_count, 32);  // kid_batches 2 x batch_size 16
      EXPECT_EQ(sample.k, sample.metric == "fid" ? 0 : (sample.metric == "precision" || sample.metric == "recall") ? 3 : 5);
      const auto value = store.metric_at(run.id, "val_" + sample.metric, epoch);
      ASSERT_TRUE(value.has_value()) << sample.metric;
      EXPECT_EQ(*value, sample.value);
    }
    EXPECT_EQ(epochs.size(), 5u);
    for (const auto& [metric, seen] : epochs) EXPECT_EQ(seen, (std::set<int64_t>{1, 2})) << metric;
  }
  const Outcome table = difflab_command("results " + (dir / "m.sqlite").string() + " --group-by loss.plugin");
  EXPECT_NE(table.output.find("best_fid"), std::string::npos) << table.output;
  EXPECT_NE(table.output.find(" ± "), std::string::npos) << table.output;  // two seeds

  const fs::path report = dir / "report.html";
  ASSERT_EQ(difflab_command("report " + (dir / "m.sqlite").string() + " --out " + report.string()).exit_code, 0);
  const Outcome dom = chromium("--dump-dom file://" + report.string());
  ASSERT_NE(dom.output.find("data-ready=\"true\""), std::string::npos) << dom.output.substr(0, 3000);
  EXPECT_EQ(dom.output.find(":CONSOLE"), std::string::npos) << dom.output.substr(0, 3000);
  const auto drawn = charts(dom.output);
  std::set<std::string> ids;
  for (const auto& [id, markup] : drawn) ids.insert(id);
  for (const char* id : {"curve-val_fid", "curve-val_precision", "curve-val_recall", "curve-val_density",
                         "curve-val_coverage", "precision-recall"})
    EXPECT_TRUE(ids.count(id)) << id;
  const auto scatter = std::find_if(drawn.begin(), drawn.end(), [](const auto& c) { return c.first == "precision-recall"; });
  ASSERT_NE(scatter, drawn.end());
  EXPECT_EQ(occurrences(scatter->second, "<circle"), 2u);  // a point a run
}

// difflab evaluate: a trained run's latest checkpoint measured with another sample count and
// other metrics, recorded with source "evaluate" beside the per-epoch rows, which it leaves as
// they were (and best_fid, from those, too); run again with the same count it measures the same
// values (its noise is seeded) and replaces its rows; bad input is exit 2.
TEST(ReportCommand, EvaluateMeasuresACheckpointWithAnySampleCountBesideTheEpochRows) {
  TempDir dir;
  const std::string database = (dir / "e.sqlite").string();
  const Outcome trained = difflab_command("run " + difflab::test::tiny_experiment() + " --set experiment.database=" +
                                          database + " --set experiment.output_dir=" + (dir / "runs").string() +
                                          " --set training.epochs=2 --set experiment.threads=1 --set "
                                          "'evaluation.metrics=[\"kid\", \"fid\"]'",
                                          "XDG_CACHE_HOME=" + (dir / "cache").string());
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  const auto epoch_rows = [&] {
    std::vector<std::string> rows;
    difflab::ResultsStore store(database, difflab::OpenMode::read_only);
    for (const auto& [epoch, sample] : store.sample_metrics(1))
      if (sample.source == "epoch") rows.push_back(fmt::format("{} {} {}", epoch, sample.metric, sample.value));
    return rows;
  };
  const std::vector<std::string> before = epoch_rows();
  ASSERT_EQ(before.size(), 2u);  // fid at epochs 1 and 2
  const std::string evaluate = "evaluate --database " + database + " --run 1 --samples 24 --set "
                               "'evaluation.metrics=[\"fid\", \"precision\", \"recall\"]' --set evaluation.best_by=val_fid";
  const Outcome first = difflab_command(evaluate, "XDG_CACHE_HOME=" + (dir / "cache").string());
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_NE(first.output.find("(epoch 2), 24 real and 24 generated images"), std::string::npos) << first.output;
  const auto evaluated = [&] {
    std::map<std::string, double> values;
    difflab::ResultsStore store(database, difflab::OpenMode::read_only);
    for (const auto& [epoch, sample] : store.sample_metrics(1))
      if (sample.source == "evaluate") {
        EXPECT_EQ(epoch, 2);
        EXPECT_EQ(sample.real_count, 24);
        EXPECT_EQ(sample.generated_count, 24);
        values[sample.metric] = sample.value;
      }
    return values;
  };
  const std::map<std::string, double> once = evaluated();
  EXPECT_EQ(once.size(), 3u);
  EXPECT_EQ(epoch_rows(), before);
  const Outcome again = difflab_command(evaluate, "XDG_CACHE_HOME=" + (dir / "cache").string());
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(evaluated(), once);  // seeded: the same values, the rows replaced (still 3)
  const Outcome table = difflab_command("results " + database + " --format csv");
  EXPECT_NE(table.output.find(fmt::format("{:.6g}", std::min(std::stod(before[0].substr(6)),
                                                            std::stod(before[1].substr(6))))),
            std::string::npos) << table.output;  // best_fid: the run's own epochs only

  const Outcome no_run = difflab_command("evaluate --database " + database + " --run 9");
  EXPECT_EQ(no_run.exit_code, 2) << no_run.output;
  EXPECT_NE(no_run.output.find("no run 9"), std::string::npos) << no_run.output;
  const Outcome too_few = difflab_command("evaluate --database " + database + " --run 1 --samples 3 --set "
                                          "'evaluation.metrics=[\"precision\"]' --set evaluation.best_by=val_precision");
  EXPECT_EQ(too_few.exit_code, 2) << too_few.output;
  EXPECT_NE(too_few.output.find("pr_k = 3 needs more than 3 samples"), std::string::npos) << too_few.output;
}

// Bad [evaluation] input: exit 2 naming the file, the line and the key, nothing written.
TEST(ReportCommand, BadSampleMetricSettingsAreExitTwoNamingTheKey) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"metrics = [\"kid\", \"is\"]", "bad.toml:29:1: evaluation.metrics: value \"is\" is not allowed"},
      {"metrics = [\"fid\"]", "evaluation.best_by: best_by = \"val_kid\" is not computed"},
      {"metrics = [\"precision\"]\nbest_by = \"val_precision\"\npr_k = 40",
       "evaluation.pr_k: pr_k = 40 needs more samples than that"},
  };
  for (const auto& [lines, expected] : cases) {
    TempDir dir;
    std::string text = read_text(difflab::test::tiny_experiment());
    const size_t at = text.find("[evaluation]\n");
    ASSERT_NE(at, std::string::npos);
    text.insert(at + 13, lines + "\n");
    std::ofstream(dir / "bad.toml") << text;
    const Outcome outcome = difflab_command("run " + (dir / "bad.toml").string() + " --set experiment.database=" +
                                            (dir / "r.sqlite").string());
    EXPECT_EQ(outcome.exit_code, 2) << outcome.output;
    EXPECT_NE(outcome.output.find("bad.toml"), std::string::npos) << outcome.output;
    EXPECT_NE(outcome.output.find(expected), std::string::npos) << lines << "\n" << outcome.output;
    EXPECT_FALSE(fs::exists(dir / "r.sqlite"));
  }
  // A sweep deciding on a sample metric the wrong way round, or one not computed.
  const std::vector<std::pair<std::string, std::string>> sweeps = {
      {"method = \"asha\"\ntrials = 2\nmetric = \"val_precision\"\n\"training.learning_rate\" = [1e-3, 1e-2]",
       "metric \"val_precision\" is maximized: set direction = \"maximize\""},
      {"method = \"asha\"\ntrials = 2\nmetric = \"val_fid\"\n\"training.learning_rate\" = [1e-3, 1e-2]",
       "metric \"val_fid\" is not computed: evaluation.metrics is [kid]"},
  };
  for (const auto& [sweep, expected] : sweeps) {
    TempDir dir;
    std::ofstream(dir / "sweep.toml") << read_text(difflab::test::tiny_experiment()) << "\n[sweep]\n" << sweep << "\n";
    const Outcome outcome = difflab_command("run " + (dir / "sweep.toml").string() + " --set experiment.database=" +
                                            (dir / "r.sqlite").string());
    EXPECT_EQ(outcome.exit_code, 2) << outcome.output;
    EXPECT_NE(outcome.output.find("sweep.toml"), std::string::npos) << outcome.output;
    EXPECT_NE(outcome.output.find(expected), std::string::npos) << sweep << "\n" << outcome.output;
    EXPECT_FALSE(fs::exists(dir / "r.sqlite"));
  }
}

// training.log_every_steps: the losses within epochs, recorded and drawn against the step; the
// key is not part of the run's identity.
TEST(ReportCommand, StepLossesDrawLearningCurvesWithinEpochs) {
  TempDir dir;
  const std::string base = difflab::test::tiny_experiment() + " --set experiment.database=" + (dir / "s.sqlite").string() +
                           " --set experiment.output_dir=" + (dir / "runs").string();
  const Outcome every_two = difflab_command("check " + base + " --set training.log_every_steps=2");
  const Outcome every_three = difflab_command("check " + base + " --set training.log_every_steps=3");
  const auto hash = [](const std::string& output) {
    const size_t at = output.find("config hash ");
    return at == std::string::npos ? std::string() : output.substr(at + 12, 16);
  };
  ASSERT_FALSE(hash(every_two.output).empty()) << every_two.output;
  EXPECT_EQ(hash(every_two.output), hash(every_three.output));  // not part of the identity

  const Outcome ran = difflab_command("run " + base + " --set training.log_every_steps=2");
  ASSERT_EQ(ran.exit_code, 0) << ran.output;
  difflab::ResultsStore store(dir / "s.sqlite", difflab::OpenMode::read_only);
  const int64_t run = store.runs().front().id;
  const std::vector<difflab::MetricRecord> steps = store.step_metrics(run);
  EXPECT_EQ(steps.size(), 3u * 4u);  // loss, n_loss, i_loss at steps 2, 4, 6, 8 (2 epochs of 4)
  // At an epoch's last step the running mean is the epoch's mean, bit for bit.
  std::map<std::pair<std::string, int64_t>, double> at_step;
  for (const auto& step : steps) at_step[{step.key, step.step}] = step.value;
  for (const auto& metric : store.metrics(run))
    if (metric.key == "n_loss") EXPECT_EQ(at_step.at({"n_loss", 4 * metric.epoch}), metric.value) << metric.epoch;

  ASSERT_EQ(difflab_command("report " + (dir / "s.sqlite").string() + " --out " + (dir / "r.html").string()).exit_code, 0);
  const std::string page = read_text(dir / "r.html");
  const std::string drawn = chart(page, "steps-n_loss");
  ASSERT_FALSE(drawn.empty());
  EXPECT_EQ(occurrences(drawn, "<g class=\"series\""), 1u);
  EXPECT_NE(drawn.find("class=\"line\""), std::string::npos);
}

TEST(ReportCommand, RunWritesItsReportAfterEveryEpochAndAtTheEnd) {
  TempDir dir;
  const std::string run = "run " + difflab::test::tiny_experiment() + " --set experiment.database=" +
                          (dir / "r.sqlite").string() + " --set experiment.output_dir=" + (dir / "runs").string() +
                          " --report " + (dir / "live.html").string();
  // Killed right after epoch 1: the report of epoch 1 is there, reloading itself.
  const Outcome killed = difflab_command(run, "DIFFLAB_TEST_SIGNAL_AFTER_EPOCH='1 9'");
  EXPECT_NE(killed.exit_code, 0);
  const std::string live = read_text(dir / "live.html");
  EXPECT_NE(live.find("<meta http-equiv=\"refresh\" content=\"30\">"), std::string::npos);
  EXPECT_EQ(occurrences(chart(live, "curve-n_loss"), "<circle"), 1u);
  // Resumed to the end: two epochs, and the last report stays still.
  const Outcome finished = difflab_command(run);
  ASSERT_EQ(finished.exit_code, 0) << finished.output;
  const std::string last = read_text(dir / "live.html");
  EXPECT_EQ(last.find("http-equiv=\"refresh\""), std::string::npos);
  EXPECT_EQ(occurrences(chart(last, "curve-n_loss"), "<circle"), 2u);
}
