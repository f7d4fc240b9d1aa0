#include "report/svg.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <limits>

namespace difflab::svg {
namespace {

constexpr size_t kMaxMarkers = 40;

bool usable(double value, bool log) { return std::isfinite(value) && (!log || value > 0.0); }

std::string coordinate(double value) { return fmt::format("{:.1f}", value); }

// The plot area inside the SVG.
struct Frame {
  double left, right, top, bottom;
  double x(const Axis& axis, double value) const { return left + axis.fraction(value) * (right - left); }
  double y(const Axis& axis, double value) const { return bottom - axis.fraction(value) * (bottom - top); }
};

std::string open_svg(const std::string& id, const std::string& title, int width, int height) {
  return fmt::format("<svg class=\"chart\" data-chart=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" "
                     "height=\"{}\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">\n"
                     "<text class=\"title\" x=\"{}\" y=\"16\" text-anchor=\"middle\">{}</text>\n",
                     escape(id), width, height, width, height, escape(title), width / 2, escape(title));
}

std::string x_axis_markup(const Axis& axis, const Frame& frame, const std::vector<std::string>& categories) {
  std::string text;
  for (double tick : axis.ticks) {
    const double x = frame.x(axis, tick);
    std::string label = tick_text(tick);
    if (!categories.empty()) {
      const auto index = static_cast<size_t>(std::llround(tick));
      label = index < categories.size() ? categories[index] : "";
      if (label.size() > 18) label = label.substr(0, 17) + "…";
    }
    text += fmt::format("<line class=\"grid\" x1=\"{0}\" x2=\"{0}\" y1=\"{1}\" y2=\"{2}\"/>"
                        "<text class=\"tick\" x=\"{0}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>\n",
                        coordinate(x), coordinate(frame.top), coordinate(frame.bottom), coordinate(frame.bottom + 14),
                        escape(label));
  }
  text += fmt::format("<text class=\"axis-label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}{}</text>\n",
                      coordinate((frame.left + frame.right) / 2), coordinate(frame.bottom + 32), escape(axis.label),
                      axis.log ? " (log)" : "");
  return text;
}

std::string y_axis_markup(const Axis& axis, const Frame& frame) {
  std::string text;
  for (double tick : axis.ticks) {
    const double y = frame.y(axis, tick);
    text += fmt::format("<line class=\"grid\" x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\"/>"
                        "<text class=\"tick\" x=\"{3}\" y=\"{4}\" text-anchor=\"end\">{5}</text>\n",
                        coordinate(frame.left), coordinate(frame.right), coordinate(y), coordinate(frame.left - 4),
                        coordinate(y + 4), tick_text(tick));
  }
  text += fmt::format("<text class=\"axis-label\" transform=\"translate(14,{}) rotate(-90)\" text-anchor=\"middle\">"
                      "{}{}</text>\n", coordinate((frame.top + frame.bottom) / 2), escape(axis.label),
                      axis.log ? " (log)" : "");
  return text;
}

double nice_step(double raw) {
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double ratio = raw / magnitude;
  return (ratio < 1.5 ? 1.0 : ratio < 3.0 ? 2.0 : ratio < 7.0 ? 5.0 : 10.0) * magnitude;
}

}  // namespace

double Axis::fraction(double value) const {
  if (log) return (std::log10(value) - std::log10(lo)) / (std::log10(hi) - std::log10(lo));
  return (value - lo) / (hi - lo);
}

Axis make_axis(const std::vector<double>& values, bool log, const std::string& label, int target, bool integer) {
  Axis axis;
  axis.log = log;
  axis.label = label;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (double value : values)
    if (usable(value, log)) {
      lo = std::min(lo, value);
      hi = std::max(hi, value);
    }
  if (log) {
    if (!std::isfinite(lo)) lo = 1.0, hi = 10.0;
    const int first = static_cast<int>(std::floor(std::log10(lo) + 1e-9));
    int last = static_cast<int>(std::ceil(std::log10(hi) - 1e-9));
    if (last <= first) last = first + 1;
    axis.lo = std::pow(10.0, first);
    axis.hi = std::pow(10.0, last);
    for (int decade = first; decade <= last; ++decade) {
      const double power = std::pow(10.0, decade);
      axis.ticks.push_back(power);
      if (last - first < 3 && decade < last)
        for (double multiple : {2.0, 5.0}) axis.ticks.push_back(multiple * power);
    }
    std::sort(axis.ticks.begin(), axis.ticks.end());
    return axis;
  }
  if (!std::isfinite(lo)) lo = 0.0, hi = 1.0;
  if (hi == lo) {
    const double pad = lo != 0.0 ? std::abs(lo) * 0.1 : 1.0;
    lo -= pad;
    hi += pad;
  }
  double step = nice_step((hi - lo) / std::max(1, target));
  if (integer) step = std::max(1.0, std::round(step));
  const auto first = static_cast<int64_t>(std::floor(lo / step + 1e-9));
  const auto last = static_cast<int64_t>(std::ceil(hi / step - 1e-9));
  axis.lo = static_cast<double>(first) * step;
  axis.hi = static_cast<double>(last) * step;
  for (int64_t k = first; k <= last; ++k) {
    const double tick = static_cast<double>(k) * step;
    axis.ticks.push_back(std::abs(tick) < step * 1e-9 ? 0.0 : tick);
  }
  return axis;
}

std::string tick_text(double value) { return fmt::format("{:.6g}", value); }

std::string escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string palette(size_t index) {
  static const char* colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  return colors[index % 10];
}

std::string colormap(double t) {
  static const double stops[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  if (!std::isfinite(t)) t = 0.0;
  t = std::clamp(t, 0.0, 1.0) * 4.0;
  const int i = std::min(3, static_cast<int>(t));
  const double f = t - i;
  int rgb[3];
  for (int c = 0; c < 3; ++c) rgb[c] = static_cast<int>(std::lround(stops[i][c] + f * (stops[i + 1][c] - stops[i][c])));
  return fmt::format("#{:02x}{:02x}{:02x}", rgb[0], rgb[1], rgb[2]);
}

Rendered render(const Chart& chart, int width, int height) {
  Rendered result;
  const bool categorical = !chart.x_categories.empty();
  std::vector<double> xs, ys;
  for (const auto& series : chart.series) {
    for (size_t i = 0; i < series.x.size(); ++i) {
      if (!usable(series.x[i], chart.log_x) || !usable(series.y[i], chart.log_y)) continue;
      xs.push_back(series.x[i]);
      ys.push_back(series.y[i]);
      if (i < series.lo.size() && usable(series.lo[i], chart.log_y)) ys.push_back(series.lo[i]);
      if (i < series.hi.size() && usable(series.hi[i], chart.log_y)) ys.push_back(series.hi[i]);
    }
  }
  Axis x_axis = make_axis(xs, chart.log_x, chart.x_label, 5, chart.integer_x);
  if (categorical) {
    x_axis.lo = -0.5;
    x_axis.hi = static_cast<double>(chart.x_categories.size()) - 0.5;
    x_axis.ticks.clear();
    for (size_t i = 0; i < chart.x_categories.size(); ++i) x_axis.ticks.push_back(static_cast<double>(i));
  }
  const Axis y_axis = make_axis(ys, chart.log_y, chart.y_label);
  const bool legend = chart.series.size() > 1 && chart.series.size() <= 12;
  const Frame frame{64.0, width - 12.0 - (legend ? 170.0 : 0.0), 28.0, height - 44.0};

  std::string& svg = result.markup;
  svg = open_svg(chart.id, chart.title, width, height);
  svg += x_axis_markup(x_axis, frame, chart.x_categories);
  svg += y_axis_markup(y_axis, frame);
  svg += fmt::format("<rect class=\"frame\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>\n", coordinate(frame.left),
                     coordinate(frame.top), coordinate(frame.right - frame.left), coordinate(frame.bottom - frame.top));
  for (size_t s = 0; s < chart.series.size(); ++s) {
    const Series& series = chart.series[s];
    const std::string color = series.color.empty() ? palette(s) : series.color;
    std::string band, line, points;
    bool pen_down = false;
    std::vector<std::pair<double, double>> upper, lower;
    auto flush_band = [&] {
      if (upper.size() >= 2) {
        band += "M";
        for (const auto& [x, y] : upper) band += coordinate(x) + "," + coordinate(y) + " ";
        for (auto it = lower.rbegin(); it != lower.rend(); ++it) band += "L" + coordinate(it->first) + "," + coordinate(it->second) + " ";
        band += "Z ";
      }
      upper.clear();
      lower.clear();
    };
    for (size_t i = 0; i < series.x.size(); ++i) {
      if (!usable(series.x[i], chart.log_x) || !usable(series.y[i], chart.log_y)) {
        ++result.skipped;
        pen_down = false;
        flush_band();
        continue;
      }
      const double x = frame.x(x_axis, series.x[i]), y = frame.y(y_axis, series.y[i]);
      line += fmt::format("{}{},{} ", pen_down ? "L" : "M", coordinate(x), coordinate(y));
      pen_down = true;
      points += fmt::format("<circle class=\"point\" cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"{}\"/>", coordinate(x),
                            coordinate(y), color);
      const bool has_band = i < series.lo.size() && i < series.hi.size() && usable(series.lo[i], chart.log_y) &&
                            usable(series.hi[i], chart.log_y);
      if (!has_band) {
        flush_band();
        continue;
      }
      const double top = frame.y(y_axis, series.hi[i]), bottom = frame.y(y_axis, series.lo[i]);
      if (series.style == Style::points) {
        band += fmt::format("M{0},{1} L{0},{2} ", coordinate(x), coordinate(top), coordinate(bottom));
      } else {
        upper.emplace_back(x, top);
        lower.emplace_back(x, bottom);
      }
    }
    flush_band();
    svg += fmt::format("<g class=\"series\" data-series=\"{}\"><title>{}</title>", escape(series.name), escape(series.name));
    if (!band.empty()) {
      ++result.bands_drawn;
      svg += series.style == Style::points
                 ? fmt::format("<path class=\"errorbar\" d=\"{}\" stroke=\"{}\"/>", band, color)
                 : fmt::format("<path class=\"band\" d=\"{}\" fill=\"{}\"/>", band, color);
    }
    if (series.style != Style::points && !line.empty())
      svg += fmt::format("<path class=\"line\" d=\"{}\" stroke=\"{}\"/>", line, color);
    // Markers on a line only while they can be told apart (and the file stays small).
    if (series.style == Style::points || (series.style == Style::lines_and_points && series.x.size() <= kMaxMarkers))
      svg += points;
    svg += "</g>\n";
    ++result.series_drawn;
    if (legend) {
      const double y = frame.top + 6 + 16.0 * static_cast<double>(s);
      std::string name = series.name.size() > 24 ? series.name.substr(0, 23) + "…" : series.name;
      svg += fmt::format("<g class=\"legend\"><rect x=\"{0}\" y=\"{1}\" width=\"10\" height=\"10\" fill=\"{2}\"/>"
                         "<text x=\"{3}\" y=\"{4}\">{5}</text></g>\n", coordinate(frame.right + 10), coordinate(y),
                         color, coordinate(frame.right + 24), coordinate(y + 9), escape(name));
    }
  }
  if (xs.empty())
    svg += fmt::format("<text class=\"note\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">no values to draw</text>\n",
                       coordinate((frame.left + frame.right) / 2), coordinate((frame.top + frame.bottom) / 2));
  if (result.skipped > 0)
    svg += fmt::format("<text class=\"note\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{} non-finite{} value{} not drawn"
                       "</text>\n", coordinate(frame.right - 4), coordinate(frame.top + 12), result.skipped,
                       chart.log_y || chart.log_x ? " or non-positive" : "", result.skipped == 1 ? "" : "s");
  svg += "</svg>\n";
  return result;
}

Rendered render_parallel(const std::string& id, const std::string& title, const std::vector<Dimension>& dimensions,
                         const std::vector<double>& color_values, const std::vector<std::string>& row_names, int width,
                         int height) {
  Rendered result;
  std::string& svg = result.markup;
  svg = open_svg(id, title, width, height);
  const double top = 36.0, bottom = height - 28.0, left = 70.0, right = width - 70.0;
  const size_t count = dimensions.size();
  std::vector<Axis> axes;
  std::vector<double> positions;
  for (size_t d = 0; d < count; ++d) {
    const Dimension& dimension = dimensions[d];
    Axis axis = make_axis(dimension.values, false, dimension.name, 4);
    if (!dimension.categories.empty()) {
      axis.lo = -0.5;
      axis.hi = static_cast<double>(dimension.categories.size()) - 0.5;
      axis.ticks.clear();
      for (size_t i = 0; i < dimension.categories.size(); ++i) axis.ticks.push_back(static_cast<double>(i));
    }
    const double x = count > 1 ? left + (right - left) * static_cast<double>(d) / static_cast<double>(count - 1) : left;
    positions.push_back(x);
    svg += fmt::format("<line class=\"pc-axis\" x1=\"{0}\" x2=\"{0}\" y1=\"{1}\" y2=\"{2}\"/>"
                       "<text class=\"axis-label\" x=\"{0}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>\n",
                       coordinate(x), coordinate(top), coordinate(bottom), coordinate(top - 8), escape(dimension.name));
    for (double tick : axis.ticks) {
      const double y = bottom - axis.fraction(tick) * (bottom - top);
      std::string label = tick_text(tick);
      if (!dimension.categories.empty()) label = dimension.categories[static_cast<size_t>(std::llround(tick))];
      svg += fmt::format("<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", coordinate(x - 4),
                         coordinate(y + 4), escape(label));
    }
    axes.push_back(axis);
  }
  double low = std::numeric_limits<double>::infinity(), high = -low;
  for (double value : color_values)
    if (std::isfinite(value)) low = std::min(low, value), high = std::max(high, value);
  const size_t rows = dimensions.empty() ? 0 : dimensions.front().values.size();
  for (size_t r = 0; r < rows; ++r) {
    std::string path;
    bool drawable = true;
    for (size_t d = 0; d < count && drawable; ++d) {
      const double value = dimensions[d].values[r];
      drawable = std::isfinite(value);
      if (drawable)
        path += fmt::format("{}{},{} ", d == 0 ? "M" : "L", coordinate(positions[d]),
                            coordinate(bottom - axes[d].fraction(value) * (bottom - top)));
    }
    if (!drawable) {
      ++result.skipped;
      continue;
    }
    const double t = high > low ? (color_values[r] - low) / (high - low) : 0.5;
    svg += fmt::format("<g class=\"series\" data-series=\"{0}\"><title>{0}</title><path class=\"pc-line\" d=\"{1}\" "
                       "stroke=\"{2}\"/></g>\n", escape(r < row_names.size() ? row_names[r] : ""), path, colormap(t));
    ++result.series_drawn;
  }
  if (result.skipped > 0)
    svg += fmt::format("<text class=\"note\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{} run{} with a missing value not "
                       "drawn</text>\n", coordinate(right), coordinate(height - 6.0), result.skipped,
                       result.skipped == 1 ? "" : "s");
  svg += "</svg>\n";
  return result;
}

}  // namespace difflab::svg
