//! AdamW (Loshchilov & Hutter 2019) with decoupled weight decay on weight matrices only,
//! and clipping by the global L2 norm of all gradients (Pascanu et al. 2013).

use burn::module::{Module, ModuleVisitor, Param, ParamGroup};
use burn::optim::{
    AdamW, AdamWState, AdaptiveMomentumState, GradientsParams, LearningRate, ModuleOptimizer,
    Optimizer,
};
use burn::prelude::*;
use manabi_model::fused::{self, AdamWStep};

use crate::config::TrainConfig;

/// AdamW without decay for all parameters, with decay for the parameters of rank ≥ 2
/// ([`crate::model::decayed_params`]).
pub fn build_optimizer<M: crate::model::TrainModel>(
    model: &M,
    cfg: &TrainConfig,
) -> ModuleOptimizer {
    let adamw = |decay: f64| FusedAdamW {
        betas: (cfg.beta1 as f32, cfg.beta2 as f32),
        epsilon: cfg.eps as f32,
        weight_decay: decay as f32,
    };
    let ids = crate::model::decayed_params(model, cfg.decay_embeddings);
    ModuleOptimizer::from(adamw(0.0)).with_group(
        ParamGroup::from_ids(ids),
        adamw(cfg.weight_decay),
        None,
    )
}

/// burn's `AdamW` (without AMSGrad or cautious decay) as one pass per parameter where
/// the device has fused kernels ([`fused::adamw`]: the same arithmetic, element for
/// element). Its state is burn's `AdamWState`, so checkpoints are unchanged.
#[derive(Clone, Debug)]
struct FusedAdamW {
    betas: (f32, f32),
    epsilon: f32,
    weight_decay: f32,
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        // Moved out of the state, so the kernel may update them in place.
        let (m, v, time) = match state {
            Some(s) => (
                s.momentum.moment_1,
                s.momentum.moment_2,
                s.momentum.time + 1,
            ),
            None => (grad.zeros_like(), grad.zeros_like(), 1),
        };
        // As burn's `AdamW`: the decay factor in f64, then each scalar as f32.
        let decay_rate = lr * f64::from(self.weight_decay);
        let step = AdamWStep {
            lr: lr as f32,
            betas: self.betas,
            epsilon: self.epsilon,
            decay: (decay_rate != 0.0).then_some((1.0 - decay_rate) as f32),
            time: i32::try_from(time).unwrap_or(i32::MAX),
        };
        let (tensor, m, v) = fused::adamw(tensor, grad, m, v, step);
        let momentum = AdaptiveMomentumState::new(time, m, v);
        (tensor, Some(AdamWState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdamW::to_device(state, device)
    }
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

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::AdamWConfig;
    use manabi_model::device::test_device;

    use super::*;

    /// `steps` steps of `optim` on a loss of `model`'s outputs; the weights after each.
    fn train(mut model: Linear, mut optim: ModuleOptimizer, steps: usize) -> Vec<Vec<f32>> {
        let device = model.weight.device();
        let mut seen = Vec::new();
        for i in 0..steps {
            let x: Vec<f32> = (0..3 * 7)
                .map(|j| ((i * 31 + j) as f32 * 0.37).sin())
                .collect();
            let x = Tensor::<1>::from_floats(x.as_slice(), &device).reshape([3, 7]);
            let loss = model.forward(x).powf_scalar(3.0).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-2, model, grads);
            let mut w = model.weight.val().into_data().try_to_vec::<f32>().unwrap();
            w.extend(
                model
                    .bias
                    .as_ref()
                    .unwrap()
                    .val()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap(),
            );
            seen.push(w);
        }
        seen
    }

    #[test]
    fn fused_adamw_steps_exactly_as_burns_adamw() {
        // The fused pass (on flex) or its reference composition must give burn's AdamW
        // bit for bit, with and without weight decay, from the first step on.
        let device = test_device().autodiff();
        for decay in [0.0f32, 0.1] {
            let model: Linear = LinearConfig::new(7, 5).init(&device);
            let fused = FusedAdamW {
                betas: (0.9, 0.95),
                epsilon: 1e-8,
                weight_decay: decay,
            };
            let burn = AdamWConfig::new()
                .with_beta_1(0.9)
                .with_beta_2(0.95)
                .with_epsilon(1e-8)
                .with_weight_decay(decay)
                .init();
            let ours = train(model.clone(), ModuleOptimizer::from(fused), 5);
            let theirs = train(model, burn, 5);
            assert_eq!(ours, theirs, "weight decay {decay}");
        }
    }
}
