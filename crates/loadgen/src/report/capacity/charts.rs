//! The capacity search's charts, drawn as inline SVG by plotters (no script, so the HTML report
//! opens offline; the web UI may serve the same strings): latency against throughput, one point
//! per step in rate order, with the objective's limits and the knee marked, and throughput
//! against the rate asked, which shows where the API stops following the rate. Steps the
//! generator could not send (void) are drawn apart, hollow and labelled: they say nothing of the
//! API.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{CapacityReport, StepReport, StepVerdict};
use crate::config::capacity::Metric;
use crate::targets::ms;

const P50: RGBColor = RGBColor(31, 119, 180);
const P95: RGBColor = RGBColor(255, 127, 14);
const P99: RGBColor = RGBColor(214, 39, 40);
const THROUGHPUT: RGBColor = RGBColor(44, 160, 44);
const GREY: RGBColor = RGBColor(130, 130, 130);
const HELD: RGBColor = RGBColor(0, 130, 0);
const BROKE: RGBColor = RGBColor(190, 0, 0);
const SIZE: (u32, u32) = (900, 360);

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
type Drawn = Result<(), Box<dyn std::error::Error>>;

/// The steps judged (not void), in rate order, and the void ones.
fn by_rate(report: &CapacityReport) -> (Vec<&StepReport>, Vec<&StepReport>) {
    let mut steps: Vec<&StepReport> = report.steps.iter().filter(|s| !s.interrupted).collect();
    steps.sort_by_key(|s| (s.rate, s.number));
    steps
        .into_iter()
        .partition(|s| s.verdict != StepVerdict::Void)
}

/// The knee's two steps, when a step broke: (the last that held, the first that broke).
fn knee_steps(report: &CapacityReport) -> (Option<&StepReport>, Option<&StepReport>) {
    let find = |n: Option<usize>| n.and_then(|n| report.steps.iter().find(|s| s.number == n));
    let knee = report.knee.as_ref();
    (
        find(knee.and_then(|k| k.held_step)),
        find(knee.map(|k| k.broke_step)),
    )
}

/// Draws `draw` on a chart titled `title`, or says why it could not be drawn.
fn svg(
    title: &str,
    [x_desc, y_desc]: [&str; 2],
    [x_max, y_max]: [f64; 2],
    draw: impl FnOnce(&mut Chart) -> Drawn,
) -> String {
    let mut svg = String::new();
    let result = (|| -> Drawn {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max.max(1.0), 0.0..y_max.max(1.0))?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        draw(&mut chart)?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
        root.present()?;
        Ok(())
    })();
    match result {
        Ok(()) => svg,
        Err(e) => format!("<p>chart {title} could not be drawn: {e}</p>"),
    }
}

/// A ring around `at` with `text` above it, in `color`: to its left (`HPos::Right`, the text
/// ending there) or to its right, so that two marks side by side keep apart.
fn mark(chart: &mut Chart, at: (f64, f64), text: String, color: RGBColor, side: HPos) -> Drawn {
    let font = ("sans-serif", 13)
        .into_font()
        .color(&color)
        .pos(Pos::new(side, VPos::Bottom));
    let dx = if matches!(side, HPos::Right) { -10 } else { 10 };
    chart.draw_series(std::iter::once(
        EmptyElement::at(at)
            + Circle::new((0, 0), 9, color.stroke_width(2))
            + Text::new(text, (dx, -10), font),
    ))?;
    Ok(())
}

/// Hollow grey points, each labelled, for the steps the generator could not send.
fn void_points(chart: &mut Chart, points: &[((f64, f64), String)]) -> Drawn {
    if points.is_empty() {
        return Ok(());
    }
    let font = ("sans-serif", 12).into_font().color(&GREY);
    chart
        .draw_series(points.iter().map(|(at, text)| {
            EmptyElement::at(*at)
                + Circle::new((0, 0), 5, GREY.stroke_width(2))
                + Text::new(text.clone(), (8, 4), font.clone())
        }))?
        .label("void: the generator could not send the rate")
        .legend(|(x, y)| Circle::new((x + 8, y), 4, GREY.stroke_width(2)));
    Ok(())
}

/// A line through `points` with a filled dot at each.
fn line(chart: &mut Chart, label: &str, color: RGBColor, points: &[(f64, f64)]) -> Drawn {
    chart
        .draw_series(LineSeries::new(points.to_vec(), color.stroke_width(2)))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
    Ok(())
}

/// A dashed line from `from` to `to`, in the legend as `label`.
fn dashed(chart: &mut Chart, label: String, color: RGBColor, [from, to]: [(f64, f64); 2]) -> Drawn {
    chart
        .draw_series(DashedLineSeries::new(
            vec![from, to],
            6,
            4,
            color.stroke_width(1),
        ))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(1)));
    Ok(())
}

/// The latency figures charted, with their colours.
const LATENCIES: [(Metric, RGBColor); 3] =
    [(Metric::P50, P50), (Metric::P95, P95), (Metric::P99, P99)];

/// Latency (p50, p95, p99) against throughput, one point per step in rate order: the
/// objective's latency limits as dashed lines, the last step that held and the first that
/// broke ringed and named, void steps hollow and apart. Latencies far above the limits are
/// drawn at the top of the chart, labelled with their figure, so that the steps that held
/// stay readable.
pub fn latency_throughput(report: &CapacityReport) -> String {
    let (judged, void) = by_rate(report);
    let limits: Vec<(Metric, f64)> = report
        .plan
        .slo
        .objectives
        .iter()
        .filter(|o| o.metric != Metric::Failures)
        .map(|o| (o.metric, o.limit))
        .collect();
    let highest_limit = limits.iter().map(|l| l.1).fold(0.0, f64::max);
    let highest_held = judged
        .iter()
        .filter(|s| s.verdict == StepVerdict::Held)
        .map(|s| s.p99_ms)
        .fold(0.0, f64::max);
    let highest = judged
        .iter()
        .chain(&void)
        .map(|s| s.p99_ms)
        .fold(highest_limit, f64::max);
    let cap = if highest_limit > 0.0 {
        highest.min((highest_limit * 4.0).max(highest_held * 2.0))
    } else {
        highest
    };
    let y_max = cap * 1.12;
    let x_max = judged
        .iter()
        .chain(&void)
        .map(|s| s.throughput_rps)
        .fold(0.0, f64::max)
        * 1.15;
    let at = |s: &StepReport, metric: Metric| (s.throughput_rps, s.figure(metric).min(cap));
    svg(
        "Latency against throughput",
        ["throughput, requests answered per second", "ms"],
        [x_max, y_max],
        |chart| {
            for (metric, color) in LATENCIES {
                let points: Vec<(f64, f64)> = judged.iter().map(|s| at(s, metric)).collect();
                line(chart, metric.name(), color, &points)?;
            }
            for (metric, limit) in &limits {
                let color = LATENCIES
                    .iter()
                    .find(|(m, _)| m == metric)
                    .map_or(GREY, |(_, c)| *c);
                dashed(
                    chart,
                    format!("{} limit {}", metric.name(), ms(*limit)),
                    color,
                    [(0.0, *limit), (x_max, *limit)],
                )?;
            }
            clipped_labels(chart, &judged, cap)?;
            let metric = limits.first().map_or(Metric::P95, |l| l.0);
            knee_marks(chart, report, |s| at(s, metric))?;
            let hollow: Vec<_> = void
                .iter()
                .map(|s| {
                    (
                        at(s, Metric::P95),
                        format!("void {}", s.rate.per_sec_text()),
                    )
                })
                .collect();
            void_points(chart, &hollow)
        },
    )
}

/// The figure of each latency drawn at the chart's top, above `cap`.
fn clipped_labels(chart: &mut Chart, steps: &[&StepReport], cap: f64) -> Drawn {
    let font = ("sans-serif", 11).into_font().color(&BLACK);
    let clipped: Vec<((f64, f64), String)> = steps
        .iter()
        .filter(|s| s.p99_ms > cap)
        .map(|s| {
            (
                (s.throughput_rps, cap),
                format!("{}: p99 {} ↑", s.rate.per_sec_text(), ms(s.p99_ms)),
            )
        })
        .collect();
    chart.draw_series(
        clipped
            .into_iter()
            .map(|(at, text)| EmptyElement::at(at) + Text::new(text, (8, 2), font.clone())),
    )?;
    Ok(())
}

/// The last step that held and the first that broke, ringed where `at` puts them.
fn knee_marks(
    chart: &mut Chart,
    report: &CapacityReport,
    at: impl Fn(&StepReport) -> (f64, f64),
) -> Drawn {
    let (held, broke) = knee_steps(report);
    if let Some(held) = held {
        mark(
            chart,
            at(held),
            format!("last held {}", held.rate.per_sec_text()),
            HELD,
            HPos::Right,
        )?;
    }
    if let Some(broke) = broke {
        mark(
            chart,
            at(broke),
            format!("first broke {}", broke.rate.per_sec_text()),
            BROKE,
            HPos::Left,
        )?;
    }
    Ok(())
}

/// Throughput against the rate asked, one point per step, beside the line throughput follows
/// while the API keeps up (the requests per iteration of the lowest rate that held): where the
/// points leave it, the API stopped following the rate. The knee is marked as on
/// [`latency_throughput`], void steps hollow and apart.
pub fn throughput_against_rate(report: &CapacityReport) -> String {
    let (judged, void) = by_rate(report);
    // Requests an iteration, as the lowest rate that held answered them.
    let per_iteration = judged
        .iter()
        .find(|s| s.verdict == StepVerdict::Held && s.rate_per_sec > 0.0)
        .map_or(1.0, |s| s.throughput_rps / s.rate_per_sec);
    let x_max = judged
        .iter()
        .chain(&void)
        .map(|s| s.rate_per_sec)
        .fold(0.0, f64::max)
        * 1.1;
    let y_max = judged
        .iter()
        .chain(&void)
        .map(|s| s.throughput_rps)
        .fold(x_max * per_iteration, f64::max)
        * 1.1;
    let at = |s: &StepReport| (s.rate_per_sec, s.throughput_rps);
    // The first rate whose throughput fell a tenth short of the line.
    let left = judged
        .iter()
        .find(|s| s.throughput_rps < 0.9 * per_iteration * s.rate_per_sec);
    svg(
        "Throughput against the rate asked",
        [
            "rate asked, iterations per second",
            "requests answered per second",
        ],
        [x_max, y_max],
        |chart| {
            dashed(
                chart,
                "following the rate".to_owned(),
                GREY,
                [(0.0, 0.0), (x_max, x_max * per_iteration)],
            )?;
            let points: Vec<(f64, f64)> = judged.iter().map(|s| at(s)).collect();
            line(chart, "throughput", THROUGHPUT, &points)?;
            if let Some(step) = left {
                // Ending at the point, so that a step at the right edge keeps its label.
                let font = ("sans-serif", 12)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Right, VPos::Top));
                // Below the point, clear of the knee's marks above it.
                chart.draw_series(std::iter::once(
                    EmptyElement::at(at(step))
                        + Text::new(
                            format!("stops following the rate at {}", step.rate.per_sec_text()),
                            (0, 14),
                            font,
                        ),
                ))?;
            }
            knee_marks(chart, report, at)?;
            let hollow: Vec<_> = void
                .iter()
                .map(|s| (at(s), format!("void {}", s.rate.per_sec_text())))
                .collect();
            void_points(chart, &hollow)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::capacity::testing::{searched, step};
    use crate::report::capacity::{StepKind, StepVerdict};

    #[test]
    fn the_curve_marks_the_knee_the_limit_and_the_void_steps() {
        let mut report = searched();
        report.steps.push(step(
            7,
            StepKind::Climb,
            160,
            70.0,
            [15.0, 30.0, 50.0],
            StepVerdict::Void,
        ));
        let svg = latency_throughput(&report);
        assert!(svg.starts_with("<svg"), "{svg}");
        for text in [
            "last held 50/s",
            "first broke 60/s",
            "p95 limit 500 ms",
            "void 160/s",
            "void: the generator could not send the rate",
            "\np50\n",
            "\np99\n",
        ] {
            assert!(svg.contains(text), "{text:?} is not in the chart: {svg}");
        }
        // 80/s's p99 of 2.5 s is far above the 500 ms limit: drawn at the top, its figure said.
        assert!(svg.contains("80/s: p99 2500 ms ↑"), "{svg}");
        // One dot per judged step and latency (6 × 3), plus the void step's ring and the knee's.
        let circles = svg.matches("<circle").count();
        assert!(circles >= 6 * 3 + 1 + 2, "{circles} circles: {svg}");

        let rates = throughput_against_rate(&report);
        for text in [
            "following the rate",
            "stops following the rate at 60/s",
            "last held 50/s",
            "first broke 60/s",
            "void 160/s",
        ] {
            assert!(
                rates.contains(text),
                "{text:?} is not in the chart: {rates}"
            );
        }
    }

    #[test]
    fn a_search_without_a_knee_marks_none() {
        let mut report = searched();
        report.knee = None;
        let svg = latency_throughput(&report);
        assert!(
            !svg.contains("last held") && !svg.contains("first broke"),
            "{svg}"
        );
        assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
    }
}
