//! The optimisation: parameters initialised from the run's own RNG
//! stream, mini-batch epochs with validation after each, early stopping,
//! and the best epoch's weights kept.

use candle_core::{Device, Tensor, Var};
use candle_nn::Optimizer as _;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::api::{ModelSpec, Optimizer, Task, TrainingSpec};

use super::super::arch::{self, Architecture, InputShape, TensorRole};
use super::super::artifact::{EpochRecord, TargetScale};
use super::super::error::MlError;
use super::fused::Fused;
use super::{INIT_STREAM, TRAIN_STREAM};

/// The network and its tensors.
pub(super) struct Parameters {
    pub(super) shapes: Vec<arch::TensorShape>,
    pub(super) vars: Vec<Var>,
    /// Which tensors `training.freeze` keeps as they are.
    pub(super) frozen: Vec<bool>,
    /// What the network takes: a row of features or an image.
    pub(super) input: InputShape,
    pub(super) network: Box<dyn arch::Network>,
}

/// Whether `training.freeze` names a tensor: its name, or a prefix of it.
pub(super) fn is_frozen(freeze: &[String], name: &str) -> bool {
    freeze.iter().any(|f| name.starts_with(f.as_str()))
}

impl Parameters {
    /// Initialised from the run's own RNG stream, then overwritten by
    /// `start` (a warm start or a base checkpoint), tensor by tensor.
    pub(super) fn init(
        arch: &dyn Architecture,
        spec: &ModelSpec,
        input: InputShape,
        outputs: usize,
        start: Option<&std::collections::HashMap<String, Tensor>>,
        device: &Device,
    ) -> Result<Parameters, MlError> {
        let shapes = arch.tensors(&spec.architecture, input, outputs);
        let mut init_rng = ChaCha8Rng::seed_from_u64(spec.training.seed);
        init_rng.set_stream(INIT_STREAM);
        let initial = arch.init(&spec.architecture, input, outputs, &mut init_rng);
        let mut vars = Vec::with_capacity(shapes.len());
        let mut tensor_map = std::collections::HashMap::new();
        for (shape, values) in shapes.iter().zip(initial) {
            let value = match start.and_then(|s| s.get(&shape.name)) {
                Some(loaded) => loaded.to_device(device)?.copy()?,
                None => Tensor::from_vec(values, shape.shape.as_slice(), device)?,
            };
            let var = Var::from_tensor(&value)?;
            tensor_map.insert(shape.name.clone(), var.as_tensor().clone());
            vars.push(var);
        }
        let freeze = &spec.training.freeze;
        let unknown: Vec<&String> = freeze
            .iter()
            .filter(|f| !shapes.iter().any(|s| s.name.starts_with(f.as_str())))
            .collect();
        if !unknown.is_empty() {
            return Err(MlError::InvalidConfig {
                field: "training.freeze".into(),
                reason: format!(
                    "{} name no tensor of this architecture; its tensors: {}",
                    unknown
                        .iter()
                        .map(|f| format!("`{f}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    shapes
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let frozen = shapes.iter().map(|s| is_frozen(freeze, &s.name)).collect();
        let network = arch.build(&spec.architecture, input, &tensor_map, &|name| {
            is_frozen(freeze, name)
        })?;
        Ok(Parameters {
            shapes,
            vars,
            frozen,
            input,
            network,
        })
    }

    /// Every tensor by name, as training left it.
    pub(super) fn named(&self) -> Vec<(String, Tensor)> {
        self.shapes
            .iter()
            .zip(&self.vars)
            .map(|(s, v)| (s.name.clone(), v.as_tensor().clone()))
            .collect()
    }

    /// What the optimiser does with tensor `i`: `None` when it is frozen or
    /// a running statistic, else whether it is the body or the head.
    fn moved(&self, i: usize) -> Option<TensorRole> {
        match (self.shapes[i].role, self.frozen[i]) {
            (_, true) | (TensorRole::RunningStatistic, _) => None,
            (role, false) => Some(role),
        }
    }

    /// The learning rate that moves tensor `i` (the head's own when
    /// `training.headLearningRate` is set); `None` when nothing moves it.
    pub(super) fn learning_rate(&self, i: usize, t: &TrainingSpec) -> Option<f64> {
        self.moved(i).map(|role| match role {
            TensorRole::Head => t.head_learning_rate.unwrap_or(t.learning_rate),
            _ => t.learning_rate,
        })
    }

    /// Whether SGD's L2 penalty covers tensor `i`: the weight matrices not frozen.
    pub(super) fn penalised(&self, i: usize) -> bool {
        self.shapes[i].shape.len() > 1 && !self.frozen[i]
    }

    /// The tensors the optimiser moves: not frozen, not running statistics;
    /// split into the body and the head (its own learning rate).
    fn trained(&self) -> (Vec<Var>, Vec<Var>) {
        let mut body = Vec::new();
        let mut head = Vec::new();
        for (i, var) in self.vars.iter().enumerate() {
            match self.moved(i) {
                Some(TensorRole::Head) => head.push(var.clone()),
                Some(_) => body.push(var.clone()),
                None => {}
            }
        }
        (body, head)
    }
}

/// SGD's L2 penalty on the loss (candle's SGD has no decoupled decay);
/// 0 for AdamW, whose decay is decoupled.
pub(super) fn sgd_l2(t: &TrainingSpec) -> f64 {
    if t.optimizer == Optimizer::Sgd {
        t.weight_decay
    } else {
        0.0
    }
}

/// Where each epoch's training inputs come from: the encoded training
/// rows, or a fresh seeded augmentation of them.
pub(super) type EpochInputs<'a> = Option<&'a mut dyn FnMut() -> Result<Tensor, MlError>>;

/// Runs the epochs (mini-batches, the optimizer, validation after each, early
/// stopping) and leaves the best parameters in `params`; returns the curve.
pub(super) fn run_epochs(
    spec: &ModelSpec,
    params: &Parameters,
    (x_train, y_train): (&Tensor, &Tensor),
    (x_val, y_val): (&Tensor, &Tensor),
    target_scale: Option<TargetScale>,
    progress: bool,
    augmented: EpochInputs<'_>,
) -> Result<Vec<EpochRecord>, MlError> {
    let mut trainer = Trainer::new(spec, params, target_scale, progress)?;
    epochs_of(&mut trainer, (x_train, y_train), (x_val, y_val), augmented)?;
    trainer.finish()
}

/// The epochs of [`run_epochs`], on a trainer made by the caller.
pub(super) fn epochs_of(
    trainer: &mut Trainer<'_>,
    (x_train, y_train): (&Tensor, &Tensor),
    (x_val, y_val): (&Tensor, &Tensor),
    mut augmented: EpochInputs<'_>,
) -> Result<(), MlError> {
    let spec = trainer.spec;
    let device = x_train.device();
    let n_train = x_train.dim(0)?;
    let batch_size = spec.training.batch_size as usize;
    let mut perm: Vec<u32> = (0..n_train as u32).collect();
    for epoch in 1..=spec.training.epochs {
        perm.shuffle(&mut trainer.rng);
        // One gather per epoch, then zero-copy batch views: fewer ops per step.
        let idx = Tensor::from_slice(&perm, n_train, device)?;
        let x_epoch = match augmented.as_deref_mut() {
            Some(next) => next()?.index_select(&idx, 0)?,
            None => x_train.index_select(&idx, 0)?,
        };
        let y_epoch = y_train.index_select(&idx, 0)?;
        for start in (0..n_train).step_by(batch_size) {
            let len = batch_size.min(n_train - start);
            trainer.step(
                &x_epoch.narrow(0, start, len)?,
                &y_epoch.narrow(0, start, len)?,
            )?;
        }
        if trainer.end_epoch(epoch, (x_val, y_val))? {
            break;
        }
    }
    Ok(())
}

/// The optimisation loop's state, fed one mini-batch at a time: by
/// [`run_epochs`] from tensors in memory, or by the streaming run from its
/// shuffle buffer. One home for the step, the loss, validation and early
/// stopping.
pub(super) struct Trainer<'a> {
    spec: &'a ModelSpec,
    params: &'a Parameters,
    /// The fused CPU step of an MLP or a CNN (`fused`); `None` trains
    /// through candle.
    fused: Option<Fused>,
    /// This epoch's summed batch losses (times rows) from the fused step.
    fused_loss: f64,
    optimizers: Vec<Opt>,
    /// L2 penalty added to the loss (SGD's weight decay).
    l2: f64,
    weight_vars: Vec<&'a Var>,
    /// The run's training stream: shuffling in memory, and dropout.
    pub(super) rng: ChaCha8Rng,
    target_scale: Option<TargetScale>,
    bar: indicatif::ProgressBar,
    /// This epoch's batch losses (times rows), on the device: a read per
    /// batch would make a GPU wait for every step to finish.
    batch_losses: Vec<Tensor>,
    rows: usize,
    curve: Vec<EpochRecord>,
    best: Option<(f64, Vec<Tensor>)>,
    stale: u32,
}

impl<'a> Trainer<'a> {
    pub(super) fn new(
        spec: &'a ModelSpec,
        params: &'a Parameters,
        target_scale: Option<TargetScale>,
        progress: bool,
    ) -> Result<Trainer<'a>, MlError> {
        let t = &spec.training;
        let (body, head) = params.trained();
        let optimizers = match t.head_learning_rate {
            Some(head_lr) => vec![
                Opt::new(t, body, t.learning_rate)?,
                Opt::new(t, head, head_lr)?,
            ],
            None => vec![Opt::new(
                t,
                body.into_iter().chain(head).collect(),
                t.learning_rate,
            )?],
        };
        let l2 = sgd_l2(t);
        let weight_vars: Vec<&Var> = (0..params.vars.len())
            .filter(|&i| params.penalised(i))
            .map(|i| &params.vars[i])
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(t.seed);
        rng.set_stream(TRAIN_STREAM);
        let bar = if progress {
            indicatif::ProgressBar::new(u64::from(t.epochs))
        } else {
            indicatif::ProgressBar::hidden()
        };
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:30} epoch {pos}/{len} {msg}")
        {
            bar.set_style(style);
        }
        Ok(Trainer {
            spec,
            params,
            fused: Fused::new(spec, params)?,
            fused_loss: 0.0,
            optimizers,
            l2,
            weight_vars,
            rng,
            target_scale,
            bar,
            batch_losses: Vec::new(),
            rows: 0,
            curve: Vec::new(),
            best: None,
            stale: 0,
        })
    }

    fn loss_of(&self, out: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
        match self.spec.task {
            Task::Classification => candle_nn::loss::cross_entropy(out, y),
            Task::Regression => candle_nn::loss::mse(out, y),
        }
    }

    /// Trains through candle's autograd even where the fused step applies:
    /// the reference the fused step is tested against.
    #[cfg(test)]
    pub(super) fn through_candle(mut self) -> Self {
        self.fused = None;
        self
    }

    /// Whether steps take the fused path.
    #[cfg(test)]
    pub(super) fn is_fused(&self) -> bool {
        self.fused.is_some()
    }

    /// One optimiser step on a mini-batch held on the host: `x` row-major
    /// (`rows × inputs`), `y` a class code or a value per row.
    pub(super) fn step_rows(&mut self, x: &[f32], y: &[f32]) -> Result<(), MlError> {
        if let Some(fused) = &mut self.fused {
            let loss = fused.step(x, y, &mut self.rng)?;
            self.fused_loss += f64::from(loss * y.len() as f32);
            self.rows += y.len();
            return Ok(());
        }
        let device = self.params.vars[0].device().clone();
        let width = if y.is_empty() { 0 } else { x.len() / y.len() };
        let xb = Tensor::from_slice(x, (y.len(), width), &device)?;
        let yb = target_tensor(self.spec.task, y.to_vec(), &device)?;
        self.step(&xb, &yb)
    }

    /// One optimiser step on a mini-batch.
    pub(super) fn step(&mut self, xb: &Tensor, yb: &Tensor) -> Result<(), MlError> {
        if self.fused.is_some() {
            let x = xb.flatten_all()?.to_vec1::<f32>()?;
            let y = yb
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            return self.step_rows(&x, &y);
        }
        let len = xb.dim(0)?;
        let out = self.params.network.forward(xb, Some(&mut self.rng))?;
        let mut loss = self.loss_of(&out, yb)?;
        self.batch_losses.push((loss.detach() * len as f64)?);
        self.rows += len;
        if self.l2 > 0.0 {
            for w in &self.weight_vars {
                loss = (loss + (w.as_tensor().sqr()?.sum_all()? * (self.l2 / 2.0))?)?;
            }
        }
        let grads = loss.backward()?;
        for optimizer in &mut self.optimizers {
            optimizer.step(&grads)?;
        }
        Ok(())
    }

    /// Closes an epoch: its training loss, validation on `(x_val, y_val)`,
    /// the curve, and early stopping. True when training should stop.
    pub(super) fn end_epoch(
        &mut self,
        epoch: u32,
        (x_val, y_val): (&Tensor, &Tensor),
    ) -> Result<bool, MlError> {
        let t = &self.spec.training;
        let n_train = std::mem::take(&mut self.rows);
        let losses = std::mem::take(&mut self.batch_losses);
        if let Some(fused) = &self.fused {
            fused.write_back()?;
        }
        let total = std::mem::take(&mut self.fused_loss)
            + if losses.is_empty() {
                0.0
            } else {
                Tensor::stack(&losses, 0)?
                    .to_dtype(candle_core::DType::F64)?
                    .sum_all()?
                    .to_scalar::<f64>()?
            };
        let train_loss = total / n_train as f64;
        if !train_loss.is_finite() {
            return Err(MlError::Diverged {
                epoch,
                loss: train_loss,
            });
        }
        let n_val = x_val.dim(0)?;
        let (validation_loss, validation_metric) = if n_val == 0 {
            (None, None)
        } else {
            let out = self.params.network.forward(x_val, None)?;
            let vloss = f64::from(self.loss_of(&out, y_val)?.to_scalar::<f32>()?);
            let metric = match self.spec.task {
                Task::Classification => {
                    let pred = out.argmax(1)?.to_dtype(candle_core::DType::U32)?;
                    let correct = pred
                        .eq(y_val)?
                        .to_dtype(candle_core::DType::F32)?
                        .sum_all()?
                        .to_scalar::<f32>()?;
                    f64::from(correct) / n_val as f64
                }
                Task::Regression => vloss.sqrt() * self.target_scale.map_or(1.0, |s| s.std),
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
        self.bar.set_message(format!(
            "loss {train_loss:.4} val {}",
            validation_loss.map_or("-".to_string(), |v| format!("{v:.4}"))
        ));
        self.bar.inc(1);
        self.curve.push(EpochRecord {
            epoch,
            train_loss,
            validation_loss,
            validation_metric,
        });
        if let Some(es) = &t.early_stopping {
            let watched = validation_loss.unwrap_or(train_loss);
            let improved = self
                .best
                .as_ref()
                .is_none_or(|(b, _)| watched < b - es.min_delta);
            if improved {
                let snapshot = self
                    .params
                    .vars
                    .iter()
                    .map(|v| v.as_tensor().copy())
                    .collect::<Result<Vec<_>, _>>()?;
                self.best = Some((watched, snapshot));
                self.stale = 0;
            } else {
                self.stale += 1;
                if self.stale >= es.patience {
                    tracing::info!(
                        epoch,
                        patience = es.patience,
                        "early stopping: no improvement"
                    );
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Leaves the best epoch's parameters in place (with early stopping)
    /// and returns the curve.
    pub(super) fn finish(self) -> Result<Vec<EpochRecord>, MlError> {
        self.bar.finish_and_clear();
        if let Some((_, snapshot)) = self.best {
            for (var, value) in self.params.vars.iter().zip(&snapshot) {
                var.set(value)?;
            }
        }
        Ok(self.curve)
    }
}

/// A batch's targets as the loss takes them: class codes (`u32`, one per
/// row) or values (`rows × 1`).
pub(super) fn target_tensor(task: Task, y: Vec<f32>, device: &Device) -> Result<Tensor, MlError> {
    let n = y.len();
    Ok(match task {
        Task::Classification => Tensor::from_vec(
            y.into_iter().map(|v| v as u32).collect::<Vec<u32>>(),
            n,
            device,
        )?,
        Task::Regression => Tensor::from_vec(y, (n, 1), device)?,
    })
}

enum Opt {
    AdamW(candle_nn::AdamW),
    Sgd(candle_nn::SGD),
}

impl Opt {
    fn new(t: &crate::api::TrainingSpec, vars: Vec<Var>, lr: f64) -> candle_core::Result<Opt> {
        Ok(match t.optimizer {
            Optimizer::Adamw => Opt::AdamW(candle_nn::AdamW::new(
                vars,
                candle_nn::ParamsAdamW {
                    lr,
                    weight_decay: t.weight_decay,
                    ..Default::default()
                },
            )?),
            Optimizer::Sgd => Opt::Sgd(candle_nn::SGD::new(vars, lr)?),
        })
    }

    fn step(&mut self, grads: &candle_core::backprop::GradStore) -> candle_core::Result<()> {
        match self {
            Opt::AdamW(o) => o.step(grads),
            Opt::Sgd(o) => o.step(grads),
        }
    }
}
