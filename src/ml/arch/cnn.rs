//! Convolutional image classifier: `convBlocks` (conv2d with same padding,
//! batch norm, the activation, 2×2 pooling), global average pooling, then
//! the head: `hiddenLayers` linear layers and the output layer, as the MLP.
//!
//! Tensor names are the block's prefix, so `training.freeze: [conv]` keeps
//! every block (batch norm included) and leaves the head to train:
//! `conv{i}.weight`, `conv{i}.bias` (without batch norm), `conv{i}.bn.weight`,
//! `conv{i}.bn.bias`, `conv{i}.bn.running_mean`, `conv{i}.bn.running_var`,
//! then `head{j}.weight`, `head{j}.bias`.

use std::collections::HashMap;

use candle_core::Tensor;
use candle_nn::BatchNorm;
use rand_chacha::ChaCha8Rng;

use crate::api::{ArchitectureSpec, ConvBlock, Pooling};

use super::conv::{BatchNorm2d, Im2Col, max_pool2};
use super::cpu::{self, Geometry, InferenceBlock};
use super::mlp::{LinearStack, activate, linear_init, linear_layers, linear_tensors};
use super::{Architecture, InputShape, Network, TensorRole, TensorShape, tensor, uniform_fan_in};
use crate::ml::error::MlError;

/// The `cnn` architecture.
pub struct Cnn;

/// PyTorch's batch-norm epsilon and momentum.
pub(crate) const BN_EPS: f64 = 1e-5;
pub(crate) const BN_MOMENTUM: f64 = 0.1;

fn input_channels(input: InputShape) -> usize {
    match input {
        InputShape::Image { channels, .. } => channels,
        // A feature vector is a 1×1 image with one channel per feature.
        InputShape::Features(n) => n,
    }
}

/// Widths of the head: the last block's channels, the hidden layers, the outputs.
fn head_widths(spec: &ArchitectureSpec, input: InputShape, outputs: usize) -> Vec<usize> {
    let last = spec
        .conv_blocks
        .last()
        .map_or(input_channels(input), |b| b.channels as usize);
    let mut w = vec![last];
    w.extend(spec.hidden_layers.iter().map(|&h| h as usize));
    w.push(outputs);
    w
}

fn block_tensors(i: usize, block: &ConvBlock, c_in: usize) -> Vec<TensorShape> {
    let c = block.channels as usize;
    let k = block.kernel as usize;
    let shape = |suffix: &str, shape: Vec<usize>, role| TensorShape {
        name: format!("conv{i}.{suffix}"),
        shape,
        role,
    };
    let mut out = vec![shape("weight", vec![c, c_in, k, k], TensorRole::Body)];
    if block.batch_norm {
        out.push(shape("bn.weight", vec![c], TensorRole::Body));
        out.push(shape("bn.bias", vec![c], TensorRole::Body));
        out.push(shape(
            "bn.running_mean",
            vec![c],
            TensorRole::RunningStatistic,
        ));
        out.push(shape(
            "bn.running_var",
            vec![c],
            TensorRole::RunningStatistic,
        ));
    } else {
        out.push(shape("bias", vec![c], TensorRole::Body));
    }
    out
}

impl Architecture for Cnn {
    fn name(&self) -> &'static str {
        "cnn"
    }

    fn tensors(
        &self,
        spec: &ArchitectureSpec,
        input: InputShape,
        outputs: usize,
    ) -> Vec<TensorShape> {
        let mut out = Vec::new();
        let mut c_in = input_channels(input);
        for (i, block) in spec.conv_blocks.iter().enumerate() {
            out.extend(block_tensors(i, block, c_in));
            c_in = block.channels as usize;
        }
        out.extend(linear_tensors("head", &head_widths(spec, input, outputs)));
        out
    }

    fn init(
        &self,
        spec: &ArchitectureSpec,
        input: InputShape,
        outputs: usize,
        rng: &mut ChaCha8Rng,
    ) -> Vec<Vec<f32>> {
        let mut out = Vec::new();
        let mut c_in = input_channels(input);
        for block in &spec.conv_blocks {
            let c = block.channels as usize;
            let k = block.kernel as usize;
            let fan_in = c_in * k * k;
            out.push(uniform_fan_in(c * fan_in, fan_in, rng));
            if block.batch_norm {
                out.extend([vec![1.0; c], vec![0.0; c], vec![0.0; c], vec![1.0; c]]);
            } else {
                out.push(uniform_fan_in(c, fan_in, rng));
            }
            c_in = c;
        }
        out.extend(linear_init(&head_widths(spec, input, outputs), rng));
        out
    }

    fn build(
        &self,
        spec: &ArchitectureSpec,
        input: InputShape,
        tensors: &HashMap<String, Tensor>,
        frozen: &dyn Fn(&str) -> bool,
    ) -> Result<Box<dyn Network>, MlError> {
        Ok(Box::new(network(spec, input, tensors, frozen)?))
    }
}

/// The network [`Cnn`] builds, unboxed.
fn network(
    spec: &ArchitectureSpec,
    input: InputShape,
    tensors: &HashMap<String, Tensor>,
    frozen: &dyn Fn(&str) -> bool,
) -> Result<CnnNetwork, MlError> {
    {
        let (height, width) = match input {
            InputShape::Image { height, width, .. } => (height, width),
            InputShape::Features(_) => (1, 1),
        };
        let mut blocks = Vec::with_capacity(spec.conv_blocks.len());
        for (i, b) in spec.conv_blocks.iter().enumerate() {
            let get = |suffix: &str| tensor(tensors, &format!("conv{i}.{suffix}"));
            let norm = if b.batch_norm {
                let bn = BatchNorm2d(BatchNorm::new_with_momentum(
                    b.channels as usize,
                    get("bn.running_mean")?,
                    get("bn.running_var")?,
                    get("bn.weight")?,
                    get("bn.bias")?,
                    BN_EPS,
                    BN_MOMENTUM,
                )?);
                Norm::Batch {
                    bn,
                    frozen: frozen(&format!("conv{i}.bn.running_mean")),
                }
            } else {
                Norm::Bias(get("bias")?.reshape((1, b.channels as usize, 1, 1))?)
            };
            blocks.push(Block {
                spec: b.clone(),
                weight: get("weight")?,
                conv: Im2Col::default(),
                norm,
            });
        }
        let head = LinearStack::new(
            linear_layers("head", spec.hidden_layers.len() + 1, tensors)?,
            spec.activation,
            spec.dropout as f32,
        );
        Ok(CnnNetwork {
            channels: input_channels(input),
            height,
            width,
            blocks,
            activation: spec.activation,
            head,
            inference: std::sync::OnceLock::new(),
        })
    }
}

enum Norm {
    /// Batch norm; a frozen one keeps its running statistics in training too.
    Batch {
        bn: BatchNorm2d,
        frozen: bool,
    },
    Bias(Tensor),
}

struct Block {
    spec: ConvBlock,
    weight: Tensor,
    conv: Im2Col,
    norm: Norm,
}

struct CnnNetwork {
    channels: usize,
    height: usize,
    width: usize,
    blocks: Vec<Block>,
    activation: crate::api::Activation,
    head: LinearStack,
    /// The CPU kernels' blocks of a network whose tensors never change
    /// (`None` inside: a shape left to candle).
    inference: std::sync::OnceLock<Option<Vec<InferenceBlock>>>,
}

impl CnnNetwork {
    /// The blocks and global average pooling: one vector per image. On
    /// the CPU without gradients (serving, validation, evaluation), the
    /// kernels of `cpu`, which the fused training step computes with too;
    /// elsewhere candle's ops.
    fn features(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        if !train
            && x.device().is_cpu()
            && x.dtype() == candle_core::DType::F32
            && let Some(features) = self.cpu_features(x)?
        {
            return Ok(features);
        }
        self.candle_features(x, train)
    }

    /// [`CnnNetwork::features`] on the CPU kernels; `None` for a shape
    /// they leave to candle ([`Geometry::new`]).
    fn cpu_features(&self, x: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let fresh;
        // A network in training reads its tensors anew at every call (the
        // optimiser moves them); a served one never changes, so its kernels
        // are permuted and its batch norm folded once.
        let blocks = if self.blocks.iter().any(|b| b.weight.is_variable()) {
            fresh = self.inference_blocks()?;
            &fresh
        } else {
            if self.inference.get().is_none() {
                let _ = self.inference.set(self.inference_blocks()?);
            }
            self.inference.get().expect("set above")
        };
        let Some(blocks) = blocks else {
            return Ok(None);
        };
        let rows = x.dim(0)?;
        let c = blocks.last().map_or(self.channels, |b| b.g.c_out);
        let x = x.flatten_all()?.to_vec1::<f32>()?;
        let out = cpu::features(
            &x,
            rows,
            (self.channels, self.height, self.width),
            blocks,
            self.activation,
        );
        Tensor::from_vec(out, (rows, c), &candle_core::Device::Cpu).map(Some)
    }

    /// The blocks as the CPU kernels take them; `None` for a shape they
    /// leave to candle.
    fn inference_blocks(&self) -> candle_core::Result<Option<Vec<InferenceBlock>>> {
        let mut blocks = Vec::with_capacity(self.blocks.len());
        let (mut c, mut h, mut w) = (self.channels, self.height, self.width);
        for b in &self.blocks {
            let Some(g) = Geometry::new(&b.spec, c, h, w) else {
                return Ok(None);
            };
            let (scale, shift) = match &b.norm {
                Norm::Batch { bn, .. } => {
                    let (scale, shift) = bn.folded()?;
                    (scale.to_vec1::<f32>()?, shift.to_vec1::<f32>()?)
                }
                Norm::Bias(bias) => (vec![1.0; g.c_out], bias.flatten_all()?.to_vec1::<f32>()?),
            };
            let mut wp = Vec::new();
            g.patch_order(&b.weight.flatten_all()?.to_vec1::<f32>()?, &mut wp);
            blocks.push(InferenceBlock::new(g, wp, scale, shift));
            (c, h, w) = (g.c_out, g.ph, g.pw);
        }
        Ok(Some(blocks))
    }

    /// [`CnnNetwork::features`] in candle's ops.
    fn candle_features(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let rows = x.dim(0)?;
        let mut h = x.reshape((rows, self.channels, self.height, self.width))?;
        for b in &self.blocks {
            // Without gradients, candle's own conv2d and max pool: the
            // same values as ours (the tests of `conv`), several times
            // faster forward; only their backward passes are slow or
            // wrong, and nothing here goes backward.
            h = if train {
                b.conv
                    .conv2d(&h, &b.weight, b.spec.padding(), b.spec.step())?
            } else {
                h.conv2d(&b.weight, b.spec.padding(), b.spec.step(), 1, 1)?
            };
            h = match &b.norm {
                Norm::Batch { bn, frozen } => bn.forward(&h, train && !frozen)?,
                Norm::Bias(bias) => h.broadcast_add(bias)?,
            };
            h = activate(&h, self.activation)?;
            h = match b.spec.pool {
                Pooling::Max if train => max_pool2(&h)?,
                Pooling::Max => h.max_pool2d(2)?,
                Pooling::Avg => h.avg_pool2d(2)?,
                Pooling::None => h,
            };
        }
        h.mean((2, 3))
    }
}

impl Network for CnnNetwork {
    fn forward(&self, x: &Tensor, train: Option<&mut ChaCha8Rng>) -> candle_core::Result<Tensor> {
        let pooled = self.features(x, train.is_some())?;
        self.head.forward(&pooled, train)
    }

    fn forward_with_embedding(&self, x: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let embedding = self.head.hidden(&self.features(x, false)?, None)?;
        Ok((self.head.output(&embedding)?, embedding))
    }

    fn head(&self, embedding: &Tensor) -> candle_core::Result<Tensor> {
        self.head.output(embedding)
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Without batch norm or dropout, training and inference compute the
    /// same function: the training path's own conv and max pool (whose
    /// gradients are ours) and the inference path's candle ops give the
    /// same outputs, at odd sizes and strides too.
    #[test]
    fn inference_ops_give_the_training_ops_outputs() {
        let spec: ArchitectureSpec = serde_json::from_value(serde_json::json!({
            "type": "cnn",
            "convBlocks": [
                {"channels": 4, "batchNorm": false, "pool": "max"},
                {"channels": 6, "kernel": 5, "stride": 2, "batchNorm": false, "pool": "max"},
                {"channels": 5, "batchNorm": false, "pool": "avg"}
            ],
            "hiddenLayers": [7]
        }))
        .unwrap();
        let input = InputShape::Image {
            channels: 2,
            height: 23,
            width: 19,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let tensors: HashMap<String, Tensor> = Cnn
            .tensors(&spec, input, 3)
            .into_iter()
            .zip(Cnn.init(&spec, input, 3, &mut rng))
            .map(|(shape, values)| {
                let t = Tensor::from_vec(values, shape.shape, &candle_core::Device::Cpu).unwrap();
                (shape.name, t)
            })
            .collect();
        let net = Cnn.build(&spec, input, &tensors, &|_| false).unwrap();
        let values: Vec<f32> = (0..3 * 2 * 23 * 19)
            .map(|_| rng.random_range(-2.0f32..2.0))
            .collect();
        let x = Tensor::from_vec(values, (3, 2 * 23 * 19), &candle_core::Device::Cpu).unwrap();
        let trained = net.forward(&x, Some(&mut rng)).unwrap();
        let inferred = net.forward(&x, None).unwrap();
        let d = super::super::max_abs_diff(&trained, &inferred);
        assert!(d < 1e-5, "{d}");
    }

    /// The CPU kernels (serving, validation, evaluation on the CPU) give
    /// candle's inference outputs: batch norm with running statistics of
    /// its own, biases, every pooling at odd sizes, strides and kernels,
    /// one and three channels, each activation.
    #[test]
    fn cpu_inference_gives_candles_outputs() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let activations = ["relu", "gelu", "tanh", "sigmoid", "silu"];
        let mut compared = 0;
        for case in 0..10 {
            let pools = ["max", "avg", "none"];
            let blocks: Vec<serde_json::Value> = (0..rng.random_range(1..4))
                .map(|_| {
                    let kernel = [1, 3, 5][rng.random_range(0..3)];
                    let pool = pools[rng.random_range(0..3)];
                    serde_json::json!({
                        "channels": rng.random_range(1..7),
                        "kernel": kernel,
                        "stride": rng.random_range(1..3),
                        "batchNorm": rng.random_bool(0.6),
                        "pool": pool,
                    })
                })
                .collect();
            let spec: ArchitectureSpec = serde_json::from_value(serde_json::json!({
                "type": "cnn",
                "convBlocks": blocks,
                "hiddenLayers": [5],
                "activation": activations[case % activations.len()],
            }))
            .unwrap();
            let input = InputShape::Image {
                channels: [1, 3][case % 2],
                height: rng.random_range(9..20),
                width: rng.random_range(9..20),
            };
            // Running statistics away from their initial 0 and 1, so the
            // folding is exercised.
            let tensors: HashMap<String, Tensor> = Cnn
                .tensors(&spec, input, 4)
                .into_iter()
                .zip(Cnn.init(&spec, input, 4, &mut rng))
                .map(|(shape, mut values)| {
                    if shape.name.ends_with("running_mean") || shape.name.ends_with("bn.bias") {
                        values
                            .iter_mut()
                            .for_each(|v| *v = rng.random_range(-0.5..0.5));
                    }
                    if shape.name.ends_with("running_var") || shape.name.ends_with("bn.weight") {
                        values
                            .iter_mut()
                            .for_each(|v| *v = rng.random_range(0.3..2.0));
                    }
                    let t =
                        Tensor::from_vec(values, shape.shape, &candle_core::Device::Cpu).unwrap();
                    (shape.name, t)
                })
                .collect();
            let net = network(&spec, input, &tensors, &|_| false).unwrap();
            // More images than one group of the kernels holds (at most 12
            // at these sizes), so a batch spans groups.
            let rows = 29;
            let values: Vec<f32> = (0..rows * input.width())
                .map(|_| rng.random_range(-2.0f32..2.0))
                .collect();
            let x =
                Tensor::from_vec(values, (rows, input.width()), &candle_core::Device::Cpu).unwrap();
            let Ok(theirs) = net.candle_features(&x, false) else {
                // A kernel larger than its padded input: refused by candle,
                // left to it by the CPU kernels.
                assert!(
                    net.cpu_features(&x).unwrap().is_none(),
                    "case {case}: {spec:?}"
                );
                continue;
            };
            let ours = net
                .cpu_features(&x)
                .unwrap()
                .expect("a shape the kernels take");
            let d = super::super::max_abs_diff(&ours, &theirs);
            assert!(d < 1e-5, "case {case}: {spec:?} over {input:?}: {d}");
            compared += 1;
        }
        assert!(compared >= 7, "only {compared} cases fit their inputs");
    }
}
