// Drawing the benchmark charts as inline SVG (internal to the bench library). Every plotted
// value carries data attributes so a test can count what was drawn against the report:
//   <figure class="chart" data-chart="NAME"> wraps each chart;
//   a line is <polyline class="series" data-series=".." data-count="N" points="x,y ...">;
//   a bar is <rect class="datum" data-series=".." data-value="..">.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <qrt/bench/chart.hpp>
#include <string>
#include <utility>
#include <vector>

namespace qrt::bench::chart {

struct axis {
  double lo = 0, hi = 1;
  bool log = false;
  unit u = unit::count;
  std::vector<tick> ticks;
  std::string label;
};

inline axis linear_axis(double lo, double hi, unit u, std::string label, int target = 5) {
  axis a;
  a.u = u;
  a.ticks = linear_ticks(lo, hi, u, target);
  a.lo = a.ticks.front().value;
  a.hi = a.ticks.back().value;
  a.label = std::move(label);
  return a;
}

inline axis log_axis(double lo, double hi, unit u, std::string label) {
  axis a;
  a.u = u;
  a.log = true;
  a.ticks = log_ticks(lo, hi, u);
  a.lo = a.ticks.front().value;
  a.hi = a.ticks.back().value;
  a.label = std::move(label);
  return a;
}

inline std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", std::isfinite(v) ? v : 0.0);
  return buf;
}

inline std::string raw_value(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

inline const char* palette(std::size_t i) {
  static const char* colours[] = {"#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd",
                                  "#d62728", "#8c564b", "#17becf", "#7f7f7f"};
  return colours[i % (sizeof colours / sizeof colours[0])];
}

/// One chart: a plot area with an x and a y axis (either may be categorical: no ticks, the
/// caller places rows or columns), lines, bars, reference lines and a legend.
class plot {
 public:
  static constexpr double width = 760;

  plot(std::string id, std::string title, double height = 320, double left = 96)
      : id_(std::move(id)), title_(std::move(title)), height_(height), left_(left) {}

  double plot_left() const { return left_; }
  double plot_right() const { return width - right_; }
  double plot_top() const { return top_; }
  double plot_bottom() const { return height_ - bottom_; }

  void set_x(axis a) { x_ = std::move(a); }
  void set_y(axis a) { y_ = std::move(a); }
  double x(double v) const {
    return plot_left() + axis_fraction(v, x_.lo, x_.hi, x_.log) * (plot_right() - plot_left());
  }
  double y(double v) const {
    return plot_bottom() - axis_fraction(v, y_.lo, y_.hi, y_.log) * (plot_bottom() - plot_top());
  }

  /// A line; `faint` draws it thin and pale, out of the legend (the raw samples behind a
  /// smoothed line).
  void line(const std::string& series, const char* colour,
            const std::vector<std::pair<double, double>>& points, bool markers = false,
            const char* dash = nullptr, bool faint = false) {
    body_ += "<polyline class=\"series\" data-series=\"" + escape(series) + "\" data-count=\"" +
             std::to_string(points.size()) + "\" fill=\"none\" stroke-width=\"" +
             (faint ? "1\" stroke-opacity=\"0.35" : "2") + "\" stroke=\"" + colour + "\"" +
             (dash ? std::string(" stroke-dasharray=\"") + dash + "\"" : "") + " points=\"";
    for (const auto& [vx, vy] : points) body_ += num(x(vx)) + "," + num(y(vy)) + " ";
    body_ += "\"/>\n";
    if (markers) {
      for (const auto& [vx, vy] : points) {
        body_ += "<circle class=\"marker\" cx=\"" + num(x(vx)) + "\" cy=\"" + num(y(vy)) +
                 "\" r=\"3.5\" fill=\"" + colour + "\"/>\n";
      }
    }
    if (!faint) legend(series, colour);
  }

  /// A rectangle in pixel coordinates standing for `value` of `series`.
  void bar(const std::string& series, double value, const char* colour, double px, double py,
           double pw, double ph, const std::string& tooltip) {
    body_ += "<rect class=\"datum\" data-series=\"" + escape(series) + "\" data-value=\"" +
             raw_value(value) + "\" x=\"" + num(px) + "\" y=\"" + num(py) + "\" width=\"" +
             num(std::max(pw, 0.0)) + "\" height=\"" + num(std::max(ph, 0.0)) + "\" fill=\"" +
             colour + "\"><title>" + escape(tooltip) + "</title></rect>\n";
  }

  void text(double px, double py, const std::string& s, const char* anchor = "start",
            const char* extra = "") {
    body_ += "<text x=\"" + num(px) + "\" y=\"" + num(py) + "\" text-anchor=\"" + anchor + "\" " +
             extra + ">" + escape(s) + "</text>\n";
  }

  /// A dashed horizontal (or vertical) line across the plot at a value of the y (x) axis.
  void reference_y(double v, const std::string& label) {
    const double py = y(v);
    body_ += "<line class=\"reference\" x1=\"" + num(plot_left()) + "\" x2=\"" + num(plot_right()) +
             "\" y1=\"" + num(py) + "\" y2=\"" + num(py) +
             "\" stroke=\"#555\" stroke-dasharray=\"5 4\"/>\n";
    text(plot_right() - 4, py - 4, label, "end", "fill=\"#555\"");
  }
  void reference_x(double v, const std::string& label) {
    const double px = x(v);
    body_ += "<line class=\"reference\" x1=\"" + num(px) + "\" x2=\"" + num(px) + "\" y1=\"" +
             num(plot_top()) + "\" y2=\"" + num(plot_bottom()) +
             "\" stroke=\"#555\" stroke-dasharray=\"5 4\"/>\n";
    // Above the plot area, so it never covers a bar; right-anchored near the right edge.
    const bool right_half = px > (plot_left() + plot_right()) / 2;
    text(right_half ? px - 4 : px + 4, plot_top() - 4, label, right_half ? "end" : "start",
         "fill=\"#555\"");
  }

  void legend(const std::string& name, const char* colour) {
    for (const auto& [n, c] : legend_)
      if (n == name) return;
    legend_.emplace_back(name, colour);
  }

  /// Custom labels for a categorical axis, at pixel positions.
  void category_x(double px, const std::string& label) {
    text(px, plot_bottom() + 18, label, "middle");
  }
  void category_y(double py, const std::string& label) {
    text(plot_left() - 8, py + 4, label, "end");
  }

  std::string finish(const std::string& caption = "") const {
    const double legend_rows = legend_.empty() ? 0 : 1;
    const double total_h = height_ + legend_rows * 18;
    std::string s = "<figure class=\"chart\" id=\"chart-" + id_ + "\" data-chart=\"" + id_ +
                    "\">\n<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " + num(width) +
                    " " + num(total_h) + "\" width=\"" + num(width) + "\" height=\"" +
                    num(total_h) +
                    "\" font-family=\"sans-serif\" font-size=\"12\" role=\"img\" "
                    "aria-label=\"" +
                    escape(title_) + "\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    s += "<text x=\"12\" y=\"22\" font-size=\"15\" font-weight=\"bold\">" + escape(title_) +
         "</text>\n";
    // Grid and tick labels.
    if (!y_.ticks.empty()) {
      for (const auto& t : y_.ticks) {
        const double py = y(t.value);
        s += "<line x1=\"" + num(plot_left()) + "\" x2=\"" + num(plot_right()) + "\" y1=\"" +
             num(py) + "\" y2=\"" + num(py) + "\" stroke=\"#e3e3e3\"/><text x=\"" +
             num(plot_left() - 6) + "\" y=\"" + num(py + 4) + "\" text-anchor=\"end\">" +
             escape(t.label) + "</text>\n";
      }
    }
    if (!x_.ticks.empty()) {
      for (const auto& t : x_.ticks) {
        const double px = x(t.value);
        s += "<line x1=\"" + num(px) + "\" x2=\"" + num(px) + "\" y1=\"" + num(plot_top()) +
             "\" y2=\"" + num(plot_bottom()) + "\" stroke=\"#eeeeee\"/><text x=\"" + num(px) +
             "\" y=\"" + num(plot_bottom() + 18) + "\" text-anchor=\"middle\">" + escape(t.label) +
             "</text>\n";
      }
    }
    s += "<line x1=\"" + num(plot_left()) + "\" x2=\"" + num(plot_left()) + "\" y1=\"" +
         num(plot_top()) + "\" y2=\"" + num(plot_bottom()) + "\" stroke=\"#333\"/>";
    s += "<line x1=\"" + num(plot_left()) + "\" x2=\"" + num(plot_right()) + "\" y1=\"" +
         num(plot_bottom()) + "\" y2=\"" + num(plot_bottom()) + "\" stroke=\"#333\"/>\n";
    if (!x_.label.empty()) {
      s += "<text x=\"" + num((plot_left() + plot_right()) / 2) + "\" y=\"" +
           num(plot_bottom() + 36) + "\" text-anchor=\"middle\" fill=\"#444\">" + escape(x_.label) +
           "</text>\n";
    }
    if (!y_.label.empty()) {
      s += "<text transform=\"translate(14," + num((plot_top() + plot_bottom()) / 2) +
           ") rotate(-90)\" text-anchor=\"middle\" fill=\"#444\">" + escape(y_.label) + "</text>\n";
    }
    s += body_;
    double lx = plot_left();
    for (const auto& [name, colour] : legend_) {
      s += "<rect x=\"" + num(lx) + "\" y=\"" + num(total_h - 16) +
           "\" width=\"14\" height=\"4\" fill=\"" + colour + "\"/><text x=\"" + num(lx + 18) +
           "\" y=\"" + num(total_h - 10) + "\">" + escape(name) + "</text>\n";
      lx += 40 + 6.5 * static_cast<double>(name.size());
    }
    s += "</svg>\n";
    if (!caption.empty()) s += "<figcaption>" + escape(caption) + "</figcaption>\n";
    s += "</figure>\n";
    return s;
  }

 private:
  std::string id_, title_;
  double height_, left_;
  double right_ = 40, top_ = 40, bottom_ = 48;
  axis x_, y_;
  std::string body_;
  std::vector<std::pair<std::string, const char*>> legend_;
};

}  // namespace qrt::bench::chart
