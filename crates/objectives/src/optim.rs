//! AdamW (Loshchilov & Hutter 2019) with decoupled weight decay on weight matrices only,
//! and clipping by the global L2 norm of all gradients (Pascanu et al. 2013).

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use manabi_model::DecoderLm;

use crate::config::TrainConfig;

/// Ids of the parameters that get weight decay: every `Linear` weight, and the
/// embedding tables when `decay_embeddings`. Norm gains and biases never decay.
pub fn decayed_params(model: &DecoderLm, decay_embeddings: bool) -> Vec<ParamId> {
    let mut ids = Vec::new();
    for block in &model.layers {
        let a = &block.attn;
        ids.extend([
            a.q_proj.weight.id,
            a.k_proj.weight.id,
            a.v_proj.weight.id,
            a.o_proj.weight.id,
        ]);
        let m = &block.mlp;
        ids.extend([m.up_proj.weight.id, m.down_proj.weight.id]);
        if let Some(g) = &m.gate_proj {
            ids.push(g.weight.id);
        }
    }
    if let Some(head) = &model.lm_head {
        ids.push(head.weight.id);
    }
    if decay_embeddings {
        ids.push(model.embed_tokens.weight.id);
        if let Some(pe) = &model.embed_positions {
            ids.push(pe.weight.id);
        }
    }
    ids
}

/// AdamW without decay for all parameters, with decay for [`decayed_params`].
pub fn build_optimizer(model: &DecoderLm, cfg: &TrainConfig) -> ModuleOptimizer {
    let base = AdamWConfig::new()
        .with_beta_1(cfg.beta1 as f32)
        .with_beta_2(cfg.beta2 as f32)
        .with_epsilon(cfg.eps as f32)
        .with_weight_decay(0.0);
    let decay = AdamWConfig::new()
        .with_beta_1(cfg.beta1 as f32)
        .with_beta_2(cfg.beta2 as f32)
        .with_epsilon(cfg.eps as f32)
        .with_weight_decay(cfg.weight_decay as f32);
    let ids = decayed_params(model, cfg.decay_embeddings);
    base.init()
        .with_group(ParamGroup::from_ids(ids), decay.build(), None)
}

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s = g.square().sum();
            self.sum = Some(match self.sum.take() {
                Some(acc) => acc + s,
                None => s,
            });
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g * self.factor);
        }
    }
}

/// The global L2 norm of `grads` over the parameters of `model`.
pub fn global_norm<M: Module>(model: &M, grads: &GradientsParams) -> f64 {
    let mut v = SquaredNorm { grads, sum: None };
    model.visit(&mut v);
    v.sum
        .map_or(0.0, |s| (s.into_scalar::<f32>() as f64).sqrt())
}

/// Scales every gradient by `factor`.
pub fn scale_grads<M: Module>(model: &M, grads: &mut GradientsParams, factor: f64) {
    model.visit(&mut Scale { grads, factor });
}
