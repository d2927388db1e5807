//! The optimisation: parameters initialised from the run's own RNG
//! stream, mini-batch epochs with validation after each, early stopping,
//! and the best epoch's weights kept.

use candle_core::{Device, Tensor, Var};
use candle_nn::Optimizer as _;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::api::{ModelSpec, Optimizer, Task};

use super::super::arch::{self, Architecture};
use super::super::artifact::{EpochRecord, TargetScale};
use super::super::error::MlError;
use super::{INIT_STREAM, TRAIN_STREAM};

/// The network and its trainable tensors.
pub(super) struct Parameters {
    pub(super) shapes: Vec<arch::TensorShape>,
    pub(super) vars: Vec<Var>,
    pub(super) network: Box<dyn arch::Network>,
}

impl Parameters {
    /// Initialised from the run's own RNG stream.
    pub(super) fn init(
        arch: &dyn Architecture,
        spec: &ModelSpec,
        inputs: usize,
        outputs: usize,
        device: &Device,
    ) -> Result<Parameters, MlError> {
        let shapes = arch.tensors(&spec.architecture, inputs, outputs);
        let mut init_rng = ChaCha8Rng::seed_from_u64(spec.training.seed);
        init_rng.set_stream(INIT_STREAM);
        let initial = arch.init(&spec.architecture, inputs, outputs, &mut init_rng);
        let mut vars = Vec::with_capacity(shapes.len());
        let mut tensor_map = std::collections::HashMap::new();
        for (shape, values) in shapes.iter().zip(initial) {
            let var = Var::from_tensor(&Tensor::from_vec(values, shape.shape.as_slice(), device)?)?;
            tensor_map.insert(shape.name.clone(), var.as_tensor().clone());
            vars.push(var);
        }
        let network = arch.build(&spec.architecture, &tensor_map)?;
        Ok(Parameters {
            shapes,
            vars,
            network,
        })
    }
}

/// Runs the epochs (mini-batches, the optimizer, validation after each, early
/// stopping) and leaves the best parameters in `params`; returns the curve.
pub(super) fn run_epochs(
    spec: &ModelSpec,
    params: &Parameters,
    (x_train, y_train): (&Tensor, &Tensor),
    (x_val, y_val): (&Tensor, &Tensor),
    target_scale: Option<TargetScale>,
    progress: bool,
) -> Result<Vec<EpochRecord>, MlError> {
    let task = spec.task;
    let device = x_train.device();
    let n_train = x_train.dim(0)?;
    let n_val = x_val.dim(0)?;
    let Parameters {
        shapes,
        vars,
        network,
    } = params;
    let loss_of = |out: &Tensor, y: &Tensor| match task {
        Task::Classification => candle_nn::loss::cross_entropy(out, y),
        Task::Regression => candle_nn::loss::mse(out, y),
    };
    let t = &spec.training;
    let mut optimizer = match t.optimizer {
        Optimizer::Adamw => Opt::AdamW(candle_nn::AdamW::new(
            vars.clone(),
            candle_nn::ParamsAdamW {
                lr: t.learning_rate,
                weight_decay: t.weight_decay,
                ..Default::default()
            },
        )?),
        Optimizer::Sgd => Opt::Sgd(candle_nn::SGD::new(vars.clone(), t.learning_rate)?),
    };
    // SGD has no decoupled decay in candle: add the L2 penalty to the loss instead.
    let l2 = if t.optimizer == Optimizer::Sgd && t.weight_decay > 0.0 {
        t.weight_decay
    } else {
        0.0
    };
    let weight_vars: Vec<&Var> = shapes
        .iter()
        .zip(vars)
        .filter(|(s, _)| s.shape.len() > 1)
        .map(|(_, v)| v)
        .collect();

    let mut rng = ChaCha8Rng::seed_from_u64(t.seed);
    rng.set_stream(TRAIN_STREAM);
    let bar = if progress {
        indicatif::ProgressBar::new(u64::from(t.epochs))
    } else {
        indicatif::ProgressBar::hidden()
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:30} epoch {pos}/{len} {msg}") {
        bar.set_style(style);
    }
    let batch_size = t.batch_size as usize;
    let mut perm: Vec<u32> = (0..n_train as u32).collect();
    let mut curve = Vec::new();
    let mut best: Option<(f64, Vec<Tensor>)> = None;
    let mut stale = 0u32;
    for epoch in 1..=t.epochs {
        perm.shuffle(&mut rng);
        // Batch losses stay on the device and are read once per epoch: a
        // read per batch would make a GPU wait for every step to finish.
        let mut batch_losses = Vec::with_capacity(n_train.div_ceil(batch_size));
        // One gather per epoch, then zero-copy batch views: fewer ops per step.
        let idx = Tensor::from_slice(&perm, n_train, device)?;
        let x_epoch = x_train.index_select(&idx, 0)?;
        let y_epoch = y_train.index_select(&idx, 0)?;
        for start in (0..n_train).step_by(batch_size) {
            let len = batch_size.min(n_train - start);
            let xb = x_epoch.narrow(0, start, len)?;
            let yb = y_epoch.narrow(0, start, len)?;
            let out = network.forward(&xb, Some(&mut rng))?;
            let mut loss = loss_of(&out, &yb)?;
            batch_losses.push((loss.detach() * len as f64)?);
            if l2 > 0.0 {
                for w in &weight_vars {
                    loss = (loss + (w.as_tensor().sqr()?.sum_all()? * (l2 / 2.0))?)?;
                }
            }
            optimizer.backward_step(&loss)?;
        }
        let total = Tensor::stack(&batch_losses, 0)?
            .to_dtype(candle_core::DType::F64)?
            .sum_all()?
            .to_scalar::<f64>()?;
        let train_loss = total / n_train as f64;
        if !train_loss.is_finite() {
            return Err(MlError::Diverged {
                epoch,
                loss: train_loss,
            });
        }
        let (validation_loss, validation_metric) = if n_val == 0 {
            (None, None)
        } else {
            let out = network.forward(x_val, None)?;
            let vloss = f64::from(loss_of(&out, y_val)?.to_scalar::<f32>()?);
            let metric = match task {
                Task::Classification => {
                    let pred = out.argmax(1)?.to_dtype(candle_core::DType::U32)?;
                    let correct = pred
                        .eq(y_val)?
                        .to_dtype(candle_core::DType::F32)?
                        .sum_all()?
                        .to_scalar::<f32>()?;
                    f64::from(correct) / n_val as f64
                }
                Task::Regression => vloss.sqrt() * target_scale.map_or(1.0, |s| s.std),
            };
            (Some(vloss), Some(metric))
        };
        tracing::info!(
            epoch,
            epochs = t.epochs,
            train_loss,
            validation_loss,
            validation_metric,
            "epoch finished"
        );
        bar.set_message(format!(
            "loss {train_loss:.4} val {}",
            validation_loss.map_or("-".to_string(), |v| format!("{v:.4}"))
        ));
        bar.inc(1);
        curve.push(EpochRecord {
            epoch,
            train_loss,
            validation_loss,
            validation_metric,
        });
        if let Some(es) = &t.early_stopping {
            let watched = validation_loss.unwrap_or(train_loss);
            let improved = best
                .as_ref()
                .is_none_or(|(b, _)| watched < b - es.min_delta);
            if improved {
                let snapshot = vars
                    .iter()
                    .map(|v| v.as_tensor().copy())
                    .collect::<Result<Vec<_>, _>>()?;
                best = Some((watched, snapshot));
                stale = 0;
            } else {
                stale += 1;
                if stale >= es.patience {
                    tracing::info!(
                        epoch,
                        patience = es.patience,
                        "early stopping: no improvement"
                    );
                    break;
                }
            }
        }
    }
    bar.finish_and_clear();
    if let Some((_, snapshot)) = best {
        for (var, value) in vars.iter().zip(&snapshot) {
            var.set(value)?;
        }
    }
    Ok(curve)
}

enum Opt {
    AdamW(candle_nn::AdamW),
    Sgd(candle_nn::SGD),
}

impl Opt {
    fn backward_step(&mut self, loss: &Tensor) -> candle_core::Result<()> {
        match self {
            Opt::AdamW(o) => o.backward_step(loss),
            Opt::Sgd(o) => o.backward_step(loss),
        }
    }
}
