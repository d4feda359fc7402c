//! Perplexity on a token stream: non-overlapping windows of `context` tokens, each
//! predicting its own next tokens (the first token of a window is context only).

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::Serialize;

use crate::decoder::DecoderLm;
use crate::error::{ModelError, Result};

/// Mean negative log-likelihood per predicted token.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Mean NLL (nats per predicted token).
    pub loss: f64,
    /// exp(loss).
    pub perplexity: f64,
    /// Tokens predicted.
    pub tokens: usize,
    /// Windows scored.
    pub windows: usize,
    /// Window length.
    pub context: usize,
}

/// Sum of next-token NLL over the rows of `windows` (all of length `t`).
fn window_nll(model: &DecoderLm, windows: &[&[u32]]) -> Result<f64> {
    let device = model.embed_tokens.weight.device();
    let (b, t) = (windows.len(), windows[0].len());
    let flat: Vec<i64> = windows
        .iter()
        .flat_map(|w| w.iter().map(|&x| x as i64))
        .collect();
    let ids = Tensor::<1, Int>::from_ints(flat.as_slice(), &device).reshape([b, t]);
    let logits = model.forward(ids.clone().slice([0..b, 0..t - 1])); // [b, t-1, v]
    let targets = ids.slice([0..b, 1..t]).reshape([b, t - 1, 1]);
    let picked = log_softmax(logits, 2).gather(2, targets); // [b, t-1, 1]
    let values: Vec<f32> = picked
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .map_err(|e| ModelError::Input(e.to_string()))?;
    Ok(-values.iter().map(|&v| v as f64).sum::<f64>())
}

/// Scores `ids` in windows of `context` tokens, `batch` windows at a time.
pub fn evaluate(
    model: &DecoderLm,
    ids: &[u32],
    context: usize,
    batch: usize,
) -> Result<EvalReport> {
    let cfg = model.config();
    if context < 2 || context > cfg.max_positions {
        return Err(ModelError::Input(format!(
            "context {context} must be in [2, {}] (the model's positions)",
            cfg.max_positions
        )));
    }
    if ids.len() < 2 {
        return Err(ModelError::Input(format!(
            "{} tokens: at least 2 are needed",
            ids.len()
        )));
    }
    if let Some(&bad) = ids.iter().find(|&&t| t as usize >= cfg.vocab_size) {
        return Err(ModelError::Input(format!(
            "token id {bad} is beyond the vocabulary ({})",
            cfg.vocab_size
        )));
    }
    let windows: Vec<&[u32]> = ids.chunks(context).filter(|w| w.len() >= 2).collect();
    let (full, rest): (Vec<&[u32]>, Vec<&[u32]>) = windows.iter().partition(|w| w.len() == context);
    let mut nll = 0.0;
    for group in full.chunks(batch.max(1)) {
        nll += window_nll(model, group)?;
    }
    for w in &rest {
        nll += window_nll(model, std::slice::from_ref(w))?;
    }
    let tokens: usize = windows.iter().map(|w| w.len() - 1).sum();
    let loss = nll / tokens as f64;
    Ok(EvalReport {
        loss,
        perplexity: loss.exp(),
        tokens,
        windows: windows.len(),
        context,
    })
}
