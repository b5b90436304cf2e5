//! The chart in BENCHMARKS.md: wall time against events, one line per case
//! and engine, rendered to PNG with plotters.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// Points per line: label -> [(events, seconds)].
pub struct Series(BTreeMap<String, Vec<(u64, f64)>>);

impl Series {
    pub fn from_results(points: impl Iterator<Item = (u64, String, f64)>) -> Series {
        let mut lines: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
        for (events, label, seconds) in points {
            if seconds.is_finite() {
                lines.entry(label).or_default().push((events, seconds));
            }
        }
        for points in lines.values_mut() {
            points.sort_by_key(|p| p.0);
        }
        Series(lines)
    }
}

/// plotters draws text with a font we hand it: take a system one.
fn load_font() -> Result<(), String> {
    const CANDIDATES: [&str; 3] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    ];
    let bytes = CANDIDATES
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or("no TrueType font found (install fonts-dejavu-core)")?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| "the font does not load".to_string())
}

pub fn draw(path: &Path, series: &Series) -> Result<(), String> {
    load_font()?;
    let max_events = series.0.values().flatten().map(|p| p.0).max().unwrap_or(1) as f64;
    let max_seconds = series
        .0
        .values()
        .flatten()
        .map(|p| p.1)
        .fold(0.0, f64::max)
        .max(0.1);
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    let e = |err: &dyn std::fmt::Display| err.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Wall time against events (median, whole process)",
            ("sans-serif", 22),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_events * 1.05 / 1e6, 0f64..max_seconds * 1.1)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("events (millions)")
        .y_desc("seconds")
        .draw()
        .map_err(|x| e(&x))?;
    for (i, (label, points)) in series.0.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let dashed = label.contains("duckdb");
        let data: Vec<(f64, f64)> = points.iter().map(|p| (p.0 as f64 / 1e6, p.1)).collect();
        let style = ShapeStyle::from(color).stroke_width(if dashed { 1 } else { 3 });
        chart
            .draw_series(LineSeries::new(data.clone(), style))
            .map_err(|x| e(&x))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .draw_series(data.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|x| e(&x))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
