//! The loss curve of a run, as SVG (plotters), written at the end of training.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Result, TrainError};

/// Draws training loss (per logged step) and validation loss to `path`.
pub fn loss_curve(path: &Path, train: &[(usize, f64)], val: &[(usize, f64)]) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| TrainError::io(path, e.to_string());
    let all = train
        .iter()
        .chain(val)
        .map(|&(_, l)| l)
        .filter(|l| l.is_finite());
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), l| {
        (a.min(l), b.max(l))
    });
    if !lo.is_finite() {
        return Ok(());
    }
    let last = train
        .iter()
        .chain(val)
        .map(|&(s, _)| s)
        .max()
        .unwrap_or(1)
        .max(1);
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("loss", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0usize..last, (lo * 0.95)..(hi * 1.05))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("nats/token")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(train.iter().copied(), &BLUE))
        .map_err(|e| err(&e))?
        .label("train")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
    chart
        .draw_series(LineSeries::new(val.iter().copied(), &RED))
        .map_err(|e| err(&e))?
        .label("validation")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
