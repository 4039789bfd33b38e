//! Charts for the HTML report, drawn as inline SVG by plotters: no script, no CDN, so the report
//! opens offline. Every chart shares the run's time axis (seconds since the start); long runs
//! are averaged into at most [`MAX_POINTS`] points so that an hour stays a few hundred KB.

use plotters::prelude::*;

/// Points per series at most.
pub const MAX_POINTS: usize = 600;

/// One line of a chart.
pub struct Series {
    /// Legend.
    pub label: String,
    /// (seconds, value).
    pub points: Vec<(f64, f64)>,
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// Averages `points` into at most [`MAX_POINTS`] buckets.
pub fn downsample(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let size = points.len().div_ceil(MAX_POINTS);
    points
        .chunks(size)
        .map(|chunk| {
            let n = chunk.len() as f64;
            (
                chunk.iter().map(|p| p.0).sum::<f64>() / n,
                chunk.iter().map(|p| p.1).sum::<f64>() / n,
            )
        })
        .collect()
}

/// An SVG line chart titled `title`, with `unit` on the y axis, over `x_max` seconds.
pub fn line_chart(title: &str, unit: &str, x_max: f64, series: &[Series]) -> String {
    let mut svg = String::new();
    // Hover targets that carry each point's value (at most TIP_POINTS per series).
    let mut tips: Vec<(i32, i32, String)> = Vec::new();
    let result = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, (900, 260)).into_drawing_area();
        root.fill(&WHITE)?;
        let y_max = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0_f64, f64::max)
            .max(1e-9)
            * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max.max(1.0), 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(unit)
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for (i, s) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let points = downsample(&s.points);
            let every = points.len().div_ceil(TIP_POINTS).max(1);
            for (x, y) in points.iter().step_by(every) {
                let (px, py) = chart.backend_coord(&(*x, *y));
                tips.push((px, py, format!("{}: {y:.1} {unit} at {x:.0} s", s.label)));
            }
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        if series.len() > 1 || series.first().is_some_and(|s| !s.label.is_empty()) {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .position(SeriesLabelPosition::UpperLeft)
                .draw()?;
        }
        root.present()?;
        Ok(())
    })();
    match result {
        Ok(()) => with_tips(svg, &tips),
        Err(e) => format!("<p>chart {title} could not be drawn: {e}</p>"),
    }
}

/// Points per series that carry a tooltip.
const TIP_POINTS: usize = 120;

/// Adds invisible circles with a `<title>` (the browser's tooltip) at the given points.
fn with_tips(svg: String, tips: &[(i32, i32, String)]) -> String {
    let Some(end) = svg.rfind("</svg>") else {
        return svg;
    };
    let mut out = String::with_capacity(svg.len() + tips.len() * 96);
    out.push_str(&svg[..end]);
    out.push_str("<g class=\"tips\">");
    for (x, y, text) in tips {
        let text = text.replace('&', "&amp;").replace('<', "&lt;");
        out.push_str(&format!(
            "<circle cx=\"{x}\" cy=\"{y}\" r=\"5\" fill=\"transparent\"><title>{text}</title></circle>"
        ));
    }
    out.push_str("</g>");
    out.push_str(&svg[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsamples_long_series() {
        let points: Vec<(f64, f64)> = (0..3600).map(|i| (f64::from(i), 1.0)).collect();
        let short = downsample(&points);
        assert!(short.len() <= MAX_POINTS);
        assert!(short.iter().all(|p| (p.1 - 1.0).abs() < 1e-9));
    }

    #[test]
    fn draws_svg() {
        let svg = line_chart(
            "req/s",
            "req/s",
            10.0,
            &[Series {
                label: "requests".into(),
                points: vec![(0.0, 1.0), (10.0, 5.0)],
            }],
        );
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("<polyline") || svg.contains("<path"), "{svg}");
        assert!(svg.contains("req/s"));
        assert!(
            svg.contains("<title>requests: 5.0 req/s at 10 s</title>"),
            "each point carries its value: {svg}"
        );
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
