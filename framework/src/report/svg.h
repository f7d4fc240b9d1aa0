// Charts as inline SVG, drawn in C++: they need no script, print to PDF and diff as text.
// Geometry first (axes with readable ticks, linear or log), then the markup.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace difflab::svg {

struct Axis {
  double lo = 0.0, hi = 1.0;  // the drawn range (on a log axis: of the values, not their logs)
  bool log = false;
  std::vector<double> ticks;  // inside [lo, hi]
  std::string label;
  // Where `value` falls on the axis, 0 at lo and 1 at hi.
  double fraction(double value) const;
};

// An axis over `values` that shows every finite one (on a log axis, every positive one): linear
// ticks at 1, 2 or 5 times a power of ten, about `target` of them, with the range widened to the
// ticks around the data; log ticks at powers of ten (and 2 and 5 times them when the range spans
// less than three decades). No usable value: the range [0, 1] (log: [1, 10]).
// `integer`: steps of at least 1 (epochs, counts).
Axis make_axis(const std::vector<double>& values, bool log, const std::string& label, int target = 5,
               bool integer = false);

// A tick's text: as few significant digits as tell neighbouring ticks apart (0.001, 2.5, 1e-05).
std::string tick_text(double value);

// lines_and_points: markers only on series of at most 40 points.
enum class Style { lines, points, lines_and_points };

// One line (or set of points) of a chart, with an optional band (lo, hi) of the same length as
// x: a shaded band around a line, error bars on points.
struct Series {
  std::string name;
  std::string color;
  std::vector<double> x, y, lo, hi;
  Style style = Style::lines;
};

struct Chart {
  std::string id;      // data-chart attribute
  std::string title;
  std::string x_label, y_label;
  bool log_x = false, log_y = false;
  bool integer_x = false;  // ticks at whole numbers only (epochs)
  std::vector<std::string> x_categories;  // categorical x: the x values are their indices
  std::vector<Series> series;
};

struct Rendered {
  std::string markup;
  int64_t skipped = 0;  // non-finite (or, on a log axis, non-positive) values left out
  int64_t series_drawn = 0;
  int64_t bands_drawn = 0;
};

// An SVG of width x height: axes, ticks and grid lines, one <g class="series"> per series (a
// path per run of consecutive drawable points; a band path where lo/hi are given), a legend,
// and a note naming how many values were left out.
Rendered render(const Chart& chart, int width = 640, int height = 360);

// Parallel coordinates: one vertical axis per dimension (categorical when `categories` is given),
// one polyline per row coloured by `color_values` (low: dark purple, high: yellow).
struct Dimension {
  std::string name;
  std::vector<double> values;             // one per row (category index when categorical)
  std::vector<std::string> categories;
};
Rendered render_parallel(const std::string& id, const std::string& title, const std::vector<Dimension>& dimensions,
                         const std::vector<double>& color_values, const std::vector<std::string>& row_names,
                         int width = 760, int height = 360);

// A colour of the palette for series `index`, and a colour for t in [0, 1] on a dark-to-yellow map.
std::string palette(size_t index);
std::string colormap(double t);

// Text made safe for HTML and SVG.
std::string escape(const std::string& text);

}  // namespace difflab::svg
