//! The fused step against candle's autograd: the same curves and tensors,
//! to rounding, for MLPs and CNNs in every shape the step takes.

use candle_core::Device;
use rand::{Rng, SeedableRng};

use super::super::epochs::{Trainer, epochs_of, is_frozen};
use super::*;
use crate::ml::arch::InputShape;

const ROWS: usize = 96;

fn spec(task: &str, architecture: &str, training: &str) -> ModelSpec {
    serde_yaml::from_str(&format!(
        "task: {task}\ndata: {{source: t.csv, target: y}}\n\
         architecture: {{{architecture}}}\n\
         training: {{epochs: 3, batchSize: 16, learningRate: 0.05, seed: 11, {training}}}\n"
    ))
    .unwrap()
}

/// Seeded inputs and targets: classes 0..3 or values, from the sums of
/// the first and second halves of each row (an image's upper and lower
/// halves, channels first).
fn data(task: Task, width: usize, rows: usize, seed: u64) -> (Tensor, Tensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x: Vec<f32> = (0..rows * width)
        .map(|_| rng.random_range(-2.0f32..2.0))
        .collect();
    let y: Vec<f32> = x
        .chunks(width)
        .map(|r| {
            let half = width.div_ceil(2);
            let a = r[..half].iter().sum::<f32>() / half as f32;
            let b = r[half..].iter().sum::<f32>() / (width - half).max(1) as f32;
            match task {
                Task::Classification => ((a + b).abs() * 6.0).min(2.0).floor(),
                Task::Regression => a * 0.7 - b + 0.3 * a * b,
            }
        })
        .collect();
    let x = Tensor::from_vec(x, (rows, width), &Device::Cpu).unwrap();
    (
        x,
        super::super::epochs::target_tensor(task, y, &Device::Cpu).unwrap(),
    )
}

/// Each epoch's training and validation loss.
type Curve = Vec<(f64, Option<f64>)>;

/// `spec`'s network over `input` (3 classes or 1 value), initialised.
fn init(spec: &ModelSpec, input: InputShape) -> Parameters {
    let outputs = match spec.task {
        Task::Classification => 3,
        Task::Regression => 1,
    };
    let arch = arch::lookup(&spec.architecture.kind).unwrap();
    Parameters::init(arch, spec, input, outputs, None, &Device::Cpu).unwrap()
}

/// Every tensor's values, flattened.
fn values(params: &Parameters) -> Vec<Vec<f32>> {
    params
        .vars
        .iter()
        .map(|v| {
            v.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        })
        .collect()
}

/// Trains `spec` for its epochs, fused or through candle; the curve and
/// every tensor's values.
fn train(spec: &ModelSpec, input: InputShape, fused: bool) -> (Curve, Vec<Vec<f32>>) {
    let params = init(spec, input);
    let (x, y) = data(spec.task, input.width(), ROWS, 1);
    let (xv, yv) = data(spec.task, input.width(), 40, 2);
    let mut trainer = Trainer::new(spec, &params, None, false).unwrap();
    if !fused {
        trainer = trainer.through_candle();
    }
    assert_eq!(trainer.is_fused(), fused, "the fused step applies here");
    epochs_of(&mut trainer, (&x, &y), (&xv, &yv), None).unwrap();
    let curve = trainer.finish().unwrap();
    let curve = curve
        .iter()
        .map(|e| (e.train_loss, e.validation_loss))
        .collect();
    (curve, values(&params))
}

/// Trains each case both ways: the losses within 1e-5 relative, every
/// tensor (running statistics included) within `tolerance`, and exactly
/// the tensors `training.freeze` names (and no running statistic of a
/// frozen batch norm) unmoved.
fn agree(cases: &[(&str, &str, &str)], input: InputShape, tolerance: f32) {
    for &(task, architecture, training) in cases {
        let spec = spec(task, architecture, training);
        let (fused_curve, fused) = train(&spec, input, true);
        let (candle_curve, reference) = train(&spec, input, false);
        let case = format!("{task} / {architecture} / {training}");
        assert_eq!(fused_curve.len(), 3, "{case}");
        for ((f, fv), (c, cv)) in fused_curve.iter().zip(&candle_curve) {
            assert!(
                (f - c).abs() <= 1e-5 * c.abs().max(1.0),
                "{case}: train loss {f} vs {c}"
            );
            let (fv, cv) = (fv.unwrap(), cv.unwrap());
            assert!(
                (fv - cv).abs() <= 1e-5 * cv.abs().max(1.0),
                "{case}: validation loss {fv} vs {cv}"
            );
        }
        let start = init(&spec, input);
        let initial = values(&start);
        for (i, ((f, c), before)) in fused.iter().zip(&reference).zip(&initial).enumerate() {
            let name = &start.shapes[i].name;
            let moved = c.iter().zip(before).any(|(a, b)| a != b);
            let frozen_bn = name.ends_with("running_mean") || name.ends_with("running_var");
            let frozen = is_frozen(&spec.training.freeze, name)
                || (frozen_bn
                    && is_frozen(
                        &spec.training.freeze,
                        &name.replace("running_var", "running_mean"),
                    ));
            assert_eq!(moved, !frozen, "{case}: {name} moved: {moved}");
            assert_eq!(
                f.iter().zip(before).any(|(a, b)| a != b),
                moved,
                "{case}: {name}"
            );
            for (a, b) in f.iter().zip(c) {
                assert!(
                    (a - b).abs() <= tolerance * b.abs().max(1.0),
                    "{case}: {name}: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn the_fused_step_trains_an_mlp_as_candles_autograd_does() {
    let cases = [
        (
            "classification",
            "type: mlp, hiddenLayers: [8], activation: relu",
            "optimizer: adamw",
        ),
        (
            "classification",
            "type: mlp, hiddenLayers: [8, 6], activation: gelu",
            "optimizer: adamw, weightDecay: 0.1",
        ),
        (
            "classification",
            "type: mlp, hiddenLayers: [7], activation: tanh, dropout: 0.3",
            "optimizer: sgd, weightDecay: 0.05",
        ),
        (
            "classification",
            "type: mlp, hiddenLayers: [], activation: relu",
            "optimizer: adamw",
        ),
        (
            "regression",
            "type: mlp, hiddenLayers: [8], activation: sigmoid",
            "optimizer: adamw, headLearningRate: 0.01",
        ),
        (
            "regression",
            "type: mlp, hiddenLayers: [6, 4], activation: silu, dropout: 0.2",
            "optimizer: adamw, freeze: [layer0.]",
        ),
        (
            "regression",
            "type: mlp, hiddenLayers: [8], activation: relu",
            "optimizer: sgd, freeze: [layer1.bias]",
        ),
    ];
    agree(&cases, InputShape::Features(5), 1e-4);
}

/// Convolutions at every stride, kernel and padding `arch::cnn` builds,
/// batch norm in training and frozen (running statistics), a bias without
/// it, each activation and pooling (odd sizes dropping their last row),
/// dropout in the head, both optimisers, both tasks.
#[test]
fn the_fused_step_trains_a_cnn_as_candles_autograd_does() {
    let one_channel = [
        (
            "classification",
            "type: cnn, convBlocks: [{channels: 4}, {channels: 6}], hiddenLayers: [8], activation: relu",
            "optimizer: adamw",
        ),
        (
            "classification",
            "type: cnn, convBlocks: [{channels: 3, kernel: 5, stride: 2, batchNorm: false, pool: avg}, \
             {channels: 5, pool: none}], hiddenLayers: [6], activation: tanh, dropout: 0.2",
            "optimizer: sgd, weightDecay: 0.05",
        ),
        (
            "regression",
            "type: cnn, convBlocks: [{channels: 4}, {channels: 4, kernel: 1, batchNorm: false}], \
             hiddenLayers: [], activation: gelu",
            "optimizer: adamw, freeze: [conv0], headLearningRate: 0.01",
        ),
    ];
    agree(
        &one_channel,
        InputShape::Image {
            channels: 1,
            height: 12,
            width: 8,
        },
        2e-4,
    );
    let three_channels = [
        (
            "classification",
            "type: cnn, convBlocks: [{channels: 4, stride: 2}, {channels: 3}], hiddenLayers: [5], activation: silu",
            "optimizer: adamw, weightDecay: 0.1, freeze: [conv1.bn.weight]",
        ),
        (
            "regression",
            "type: cnn, convBlocks: [{channels: 5, pool: max}], activation: sigmoid",
            "optimizer: sgd, freeze: [head0.bias]",
        ),
    ];
    agree(
        &three_channels,
        InputShape::Image {
            channels: 3,
            height: 11,
            width: 9,
        },
        2e-4,
    );
}

/// A batch's image groups run on rayon's threads, and the number of
/// threads changes nothing: the same curve and the same bits in every
/// tensor after three epochs on one thread and on three.
#[test]
fn a_cnn_trains_to_the_same_bits_on_one_thread_or_several() {
    let spec = spec(
        "classification",
        "type: cnn, convBlocks: [{channels: 4}, {channels: 6, batchNorm: false, pool: avg}], \
         hiddenLayers: [8], activation: relu",
        "optimizer: adamw",
    );
    let input = InputShape::Image {
        channels: 2,
        height: 12,
        width: 8,
    };
    let on = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| train(&spec, input, true))
    };
    let (one_curve, one) = on(1);
    let (three_curve, three) = on(3);
    assert_eq!(one_curve, three_curve);
    assert_eq!(one, three);
    let start = values(&init(&spec, input));
    assert!(
        one.iter()
            .zip(&start)
            .all(|(after, before)| after != before)
    );
}

#[test]
fn a_class_code_outside_the_outputs_is_an_error_not_a_wild_read() {
    let spec = spec(
        "classification",
        "type: mlp, hiddenLayers: [4], activation: relu",
        "optimizer: adamw",
    );
    let params = init(&spec, InputShape::Features(5));
    let mut fused = Fused::new(&spec, &params).unwrap().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let x = vec![0.5; 2 * 5];
    let err = fused.step(&x, &[1.0, 3.0], &mut rng).unwrap_err();
    assert!(
        err.to_string().contains("class code 3 outside 0..3"),
        "{err}"
    );
    let err = fused.step(&x[..6], &[1.0, 2.0], &mut rng).unwrap_err();
    assert!(err.to_string().contains("expects 5"), "{err}");
    assert!(fused.step(&x, &[1.0, 2.0], &mut rng).unwrap().is_finite());
}

/// Average pooling over an odd size is left to candle's path, whose
/// backward this step does not reproduce; so is every network off the CPU.
#[test]
fn average_pooling_over_an_odd_size_trains_through_candle() {
    let spec = spec(
        "classification",
        "type: cnn, convBlocks: [{channels: 2, pool: avg}]",
        "optimizer: adamw",
    );
    let odd = InputShape::Image {
        channels: 1,
        height: 7,
        width: 8,
    };
    assert!(Fused::new(&spec, &init(&spec, odd)).unwrap().is_none());
    let even = InputShape::Image {
        channels: 1,
        height: 6,
        width: 8,
    };
    assert!(Fused::new(&spec, &init(&spec, even)).unwrap().is_some());
}
