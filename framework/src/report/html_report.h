// `difflab report`: one self-contained HTML file from a results database — overview, the
// grouped table, learning curves with bands across seeds, KID against network evaluations, one-
// factor effects, parallel coordinates, sample grids with an epoch slider, and every run's
// parameters against a baseline. Charts are inline SVG drawn here (svg.h); a little plain
// JavaScript sorts tables, toggles series and moves the sliders. Nothing is fetched when it opens.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace difflab {

class ResultsStore;

struct ReportOptions {
  std::string where;                  // a filter (filter.h); empty: every run
  std::vector<std::string> group_by;  // default: the parameters that vary, but experiment.seed
  int64_t baseline = 0;               // the run others are compared with; 0: the best by `metric`
  std::string baseline_group;         // a filter picking the grouped table's baseline group (difflab
                                      // results --baseline): each group's differences to it
  std::string metric = "best_kid";    // the one-factor and parallel-coordinates metric: best_kid or
                                      // the final value of a metric key (val_n_loss, ...)
  bool embed_images = true;           // base64 thumbnails in the file; false: links relative to it
  std::filesystem::path out = "report.html";
  bool log_y = false;                 // learning curves on log axes
  int64_t grid_runs = 24;             // sample grids of at most this many runs (best first)
  int64_t grid_epochs = 6;            // embedded grids per run, evenly spaced, the last included
  int64_t thumbnail_width = 256;      // embedded grids wider than this are downscaled
  int64_t refresh_seconds = 0;        // > 0: the page reloads itself that often (--watch)
};

struct ReportSummary {
  int64_t runs = 0;
  int64_t charts = 0;
  int64_t series = 0;
  int64_t images = 0;
  int64_t missing_images = 0;
};

// The report as HTML text. Reads the database only. Throws a config Error naming the option for
// a bad --where, --group-by, --baseline or --metric.
std::string render_report(ResultsStore& store, const ReportOptions& options, ReportSummary* summary = nullptr);

// A PNG file as a data: URI, downscaled to at most `max_width` pixels wide; "" when unreadable.
std::string png_data_uri(const std::filesystem::path& file, int64_t max_width);

}  // namespace difflab
