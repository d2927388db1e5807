//! A network's outputs turned into what a caller reads: class
//! probabilities and labels, or values on the target's scale. The one home
//! of that step for every predictor, whichever computed the outputs (the
//! CPU kernels or candle's ops, on any device).

use candle_core::{Device, Tensor};

use crate::api::Task;

use super::arch::cpu;
use super::artifact::{Predictions, Predictor, TargetScale};
use super::error::MlError;

impl Predictor {
    /// [`Predictor::predictions_from`] for outputs held in a tensor.
    pub(crate) fn predictions(&self, out: &Tensor) -> Result<Predictions, MlError> {
        let rows = out.dim(0)?;
        let values = out
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        self.predictions_from(values, rows)
    }

    /// Class probabilities and labels, or values, from the network's
    /// outputs (`rows × outputs`, row-major). The probabilities are the bits
    /// candle's `out / temperature` and `softmax_last_dim` give.
    pub(crate) fn predictions_from(
        &self,
        mut out: Vec<f32>,
        rows: usize,
    ) -> Result<Predictions, MlError> {
        match self.task {
            Task::Classification => {
                let width = out.len() / rows.max(1);
                probabilities(&mut out, width, self.temperature);
                // One row (the common answer) keeps the list it was
                // computed in.
                let probs: Vec<Vec<f32>> = if out.len() == width.max(1) {
                    vec![out]
                } else {
                    out.chunks_exact(width.max(1))
                        .map(<[f32]>::to_vec)
                        .collect()
                };
                let labels = probs
                    .iter()
                    .map(|p| {
                        let best = p
                            .iter()
                            .enumerate()
                            .max_by(|a, b| a.1.total_cmp(b.1))
                            .map_or(0, |(i, _)| i);
                        self.classes.get(best).cloned().unwrap_or_default()
                    })
                    .collect();
                Ok(Predictions {
                    labels,
                    values: Vec::new(),
                    probabilities: Some(probs),
                })
            }
            Task::Regression => {
                let scale = self.target_scale.unwrap_or(TargetScale {
                    mean: 0.0,
                    std: 1.0,
                });
                let values = out
                    .into_iter()
                    .map(|v| f64::from(v) * scale.std + scale.mean)
                    .collect();
                Ok(Predictions {
                    labels: Vec::new(),
                    values,
                    probabilities: None,
                })
            }
        }
    }
}

/// Logits (`rows × width`) into class probabilities in place: divided by
/// the temperature, then the softmax, with candle's rounding at each step.
fn probabilities(logits: &mut [f32], width: usize, temperature: f32) {
    // Exactly the trained outputs at temperature 1, so artifacts from
    // before calibration answer as they always did.
    if temperature != 1.0 {
        // candle's `Tensor / f64`: the affine map `v · (1/t) + 0` in f32.
        let mul = (1.0 / f64::from(temperature)) as f32;
        for v in logits.iter_mut() {
            *v = *v * mul + 0.0;
        }
    }
    cpu::softmax_rows(logits, width);
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};
    use candle_nn::Linear;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::api::{Activation, load_model_config};
    use crate::ml::arch::Network;
    use crate::ml::arch::mlp::LinearStack;
    use crate::ml::{LoadedModel, TrainOptions, preprocess};

    /// What candle's ops answer for encoded rows: the network's forward,
    /// then `out / temperature` and `softmax_last_dim`, or the values
    /// scaled back: the path served predictions took before the kernels.
    fn candle_answer(p: &Predictor, encoded: &[f32], rows: usize) -> Predictions {
        let x = Tensor::from_vec(encoded.to_vec(), (rows, p.inputs), &Device::Cpu).unwrap();
        let out = p.network.forward(&x, None).unwrap();
        match p.task {
            Task::Classification => {
                let out = if p.temperature == 1.0 {
                    out
                } else {
                    (out / f64::from(p.temperature)).unwrap()
                };
                let probs = candle_nn::ops::softmax_last_dim(&out)
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap();
                let labels = probs
                    .iter()
                    .map(|r| {
                        let best = r
                            .iter()
                            .enumerate()
                            .max_by(|a, b| a.1.total_cmp(b.1))
                            .unwrap()
                            .0;
                        p.classes[best].clone()
                    })
                    .collect();
                Predictions {
                    labels,
                    values: Vec::new(),
                    probabilities: Some(probs),
                }
            }
            Task::Regression => {
                let scale = p.target_scale.unwrap();
                let values = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                Predictions {
                    labels: Vec::new(),
                    values: values
                        .into_iter()
                        .map(|v| f64::from(v) * scale.std + scale.mean)
                        .collect(),
                    probabilities: None,
                }
            }
        }
    }

    fn bits(p: &Predictions) -> (Vec<String>, Vec<u64>, Vec<Vec<u32>>) {
        (
            p.labels.clone(),
            p.values.iter().map(|v| v.to_bits()).collect(),
            p.probabilities
                .iter()
                .flatten()
                .map(|r| r.iter().map(|v| v.to_bits()).collect())
                .collect(),
        )
    }

    /// Every bundled pipeline's artifact, trained, saved and loaded as
    /// `driftline train` and `serve` do: its answers on the CPU kernels are
    /// candle's to the bit, on its test rows and on random rows, one row
    /// at a time and in batches.
    #[tokio::test]
    async fn every_bundled_artifact_answers_with_candles_bits_on_the_cpu_kernels() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = 0;
        let mut files: Vec<_> = std::fs::read_dir("pipelines")
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for file in files {
            let mut spec = load_model_config(&std::fs::read_to_string(&file).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            // The weights' values do not matter here, only that they are
            // this pipeline's architecture, preprocessing and calibration.
            spec.training.epochs = spec.training.epochs.min(4);
            let trained = crate::ml::train(&spec, &TrainOptions::default())
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let uri = dir.path().join(seen.to_string()).display().to_string();
            trained.save(&uri).await.unwrap();
            let model = LoadedModel::load(&uri).await.unwrap();
            let p = model.predictor();

            let test = spec
                .gate
                .as_ref()
                .map(|g| g.test_set.clone())
                .unwrap_or(spec.data.source.clone());
            let path = test.trim_start_matches("file://");
            let table = crate::data::Table::from_csv(path, &std::fs::read(path).unwrap()).unwrap();
            let batch = preprocess::FeatureBatch::from_table(&p.features, &table).unwrap();
            let mut encoded = preprocess::encode(&p.features, &batch, "test").unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(seen);
            // Random rows too, far outside the data as well as inside it.
            for _ in 0..64 * p.inputs {
                encoded.push(rng.random_range(-6.0f32..6.0));
            }
            let all = encoded.len() / p.inputs;
            for rows in [1, 7, 32, all] {
                for chunk in encoded.chunks(rows * p.inputs) {
                    let n = chunk.len() / p.inputs;
                    assert!(
                        p.network.forward_cpu(chunk, n).is_some(),
                        "{}: a loaded artifact is computed by the kernels",
                        file.display()
                    );
                    let fast = p.predict_encoded(chunk.to_vec(), n).unwrap();
                    assert_eq!(
                        bits(&fast),
                        bits(&candle_answer(p, chunk, n)),
                        "{}: {n} rows",
                        file.display()
                    );
                }
            }
            seen += 1;
        }
        assert!(seen >= 4, "the bundled pipelines were found ({seen})");
    }

    /// Random networks (widths, depths, every activation), random
    /// weights and rows: the kernels' outputs are candle's to the bit; and
    /// a network whose tensors are being trained is left to candle.
    #[test]
    fn random_linear_stacks_give_candles_bits() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let activations = [
            Activation::Relu,
            Activation::Gelu,
            Activation::Tanh,
            Activation::Sigmoid,
            Activation::Silu,
        ];
        for case in 0..60 {
            let depth = rng.random_range(1..=4);
            let mut widths = vec![rng.random_range(1..=40)];
            for _ in 0..depth {
                widths.push(rng.random_range(1..=70));
            }
            let layers: Vec<Linear> = widths
                .windows(2)
                .map(|w| {
                    let weight: Vec<f32> = (0..w[0] * w[1])
                        .map(|_| rng.random_range(-1.0f32..1.0))
                        .collect();
                    let bias: Vec<f32> =
                        (0..w[1]).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                    Linear::new(
                        Tensor::from_vec(weight, (w[1], w[0]), &Device::Cpu).unwrap(),
                        Some(Tensor::from_vec(bias, w[1], &Device::Cpu).unwrap()),
                    )
                })
                .collect();
            let stack = LinearStack::new(layers, activations[case % 5], 0.0);
            let rows = [1, 2, 5, 32, 97][case % 5];
            let x: Vec<f32> = (0..rows * widths[0])
                .map(|_| rng.random_range(-4.0f32..4.0))
                .collect();
            let fast = stack.forward_cpu(&x, rows).expect("fixed CPU tensors");
            let t = Tensor::from_vec(x.clone(), (rows, widths[0]), &Device::Cpu).unwrap();
            let slow = stack.forward(&t, None).unwrap().flatten_all().unwrap();
            let to_bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                to_bits(&fast),
                to_bits(&slow.to_vec1::<f32>().unwrap()),
                "case {case}: widths {widths:?}, {rows} rows, {:?}",
                activations[case % 5]
            );
            assert_eq!(
                stack.forward_cpu(&x[1..], rows),
                None,
                "a short batch is refused"
            );
        }
        let var = candle_core::Var::from_tensor(
            &Tensor::ones((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap(),
        )
        .unwrap();
        let trained = LinearStack::new(
            vec![Linear::new(
                var.as_tensor().clone(),
                Some(Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap()),
            )],
            Activation::Relu,
            0.0,
        );
        assert_eq!(
            trained.forward_cpu(&[0.0; 3], 1),
            None,
            "tensors in training go to candle"
        );
    }

    /// Random logits of every width to 20 and around candle's vector step
    /// (32 values: below it candle sums in order, from it in lanes), at
    /// several temperatures: the probabilities are candle's
    /// `softmax_last_dim(out / t)` to the bit.
    #[test]
    fn probabilities_are_candles_softmax_to_the_bit() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for width in (1..=20).chain([31, 32, 33, 64, 100]) {
            for temperature in [1.0f32, 0.37, 1.9] {
                let rows = 9;
                let logits: Vec<f32> = (0..rows * width)
                    .map(|_| rng.random_range(-30.0f32..30.0))
                    .collect();
                let mut ours = logits.clone();
                probabilities(&mut ours, width, temperature);
                let t = Tensor::from_vec(logits, (rows, width), &Device::Cpu).unwrap();
                let t = if temperature == 1.0 {
                    t
                } else {
                    (t / f64::from(temperature)).unwrap()
                };
                let theirs = candle_nn::ops::softmax_last_dim(&t)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                let to_bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    to_bits(&ours),
                    to_bits(&theirs),
                    "width {width}, t {temperature}"
                );
            }
        }
    }
}
