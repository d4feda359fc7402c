//! AdamW (Loshchilov & Hutter 2019) with decoupled weight decay on weight matrices only,
//! and clipping by the global L2 norm of all gradients (Pascanu et al. 2013).

use burn::module::{Module, ModuleVisitor, Param, ParamGroup};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;

use crate::config::TrainConfig;

/// AdamW without decay for all parameters, with decay for the weight matrices
/// ([`crate::model::decayed_params`]).
pub fn build_optimizer<M: Module>(model: &M, cfg: &TrainConfig) -> ModuleOptimizer {
    let adamw = |decay: f64| {
        AdamWConfig::new()
            .with_beta_1(cfg.beta1 as f32)
            .with_beta_2(cfg.beta2 as f32)
            .with_epsilon(cfg.eps as f32)
            .with_weight_decay(decay as f32)
    };
    let ids = crate::model::decayed_params(model, cfg.decay_embeddings);
    adamw(0.0).init().with_group(
        ParamGroup::from_ids(ids),
        adamw(cfg.weight_decay).build(),
        None,
    )
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
