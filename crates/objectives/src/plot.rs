//! The loss curve of a run and the curve of its key metric, as SVG (plotters), written
//! at the end of training.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Result, TrainError};

/// Draws training loss (per logged step) and validation loss to `path`, the y axis
/// labelled `unit`.
pub fn loss_curve(
    path: &Path,
    train: &[(usize, f64)],
    val: &[(usize, f64)],
    unit: &str,
) -> Result<()> {
    curves(
        path,
        "loss",
        unit,
        &[("train", train, BLUE), ("validation", val, RED)],
    )
}

/// Draws one metric's values by step to `path`, captioned and labelled `label`.
pub fn metric_curve(path: &Path, label: &str, points: &[(usize, f64)]) -> Result<()> {
    curves(path, label, label, &[(label, points, BLUE)])
}

type Series<'a> = (&'a str, &'a [(usize, f64)], RGBColor);

fn curves(path: &Path, caption: &str, unit: &str, series: &[Series]) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| TrainError::io(path, e.to_string());
    let points = || series.iter().flat_map(|s| s.1.iter().copied());
    let (lo, hi) = points()
        .map(|(_, v)| v)
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return Ok(());
    }
    // 5 % of the range on each side (losses and rewards can be negative).
    let pad = ((hi - lo) * 0.05)
        .max(hi.abs().max(lo.abs()) * 0.01)
        .max(1e-6);
    let (lo, hi) = (lo - pad, hi + pad);
    let last = points().map(|(s, _)| s).max().unwrap_or(1).max(1);
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0usize..last, lo..hi)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(unit)
        .draw()
        .map_err(|e| err(&e))?;
    for &(name, points, color) in series {
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
