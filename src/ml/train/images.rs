//! Training on an image set: the same steps as a table (seeded split,
//! preprocessing fitted on the training split, epochs, validation, drift
//! reference), with images decoded once, preprocessed into the tensor the
//! network sees, and augmented afresh each epoch when asked.

use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::api::{ModelSpec, Task};
use crate::data::{self, DecodeLimits, ImageSet};

use super::super::artifact::{DatasetLineage, Predictor};
use super::super::error::MlError;
use super::super::vision::ImagePreprocessing;
use super::encode::{Split, encode_targets, gather};
use super::epochs::{Parameters, run_epochs};
use super::image_reference::image_reference;
use super::start::{Checkpoints, choose};
use super::{AUGMENT_STREAM, Finished, TrainedModel, finish, validate, validation_metrics};

/// Reads and decodes the image set a spec names (`data.source`), skipping
/// up to `data.images.maxBadImages` undecodable images.
pub(super) async fn read(spec: &ModelSpec) -> Result<ImageSet, MlError> {
    let images = spec.data.images.clone().unwrap_or_default();
    Ok(data::read_image_set(
        &spec.data.source,
        &spec.data.target,
        DecodeLimits::default(),
        images.max_bad_images,
    )
    .await?)
}

/// Trains an image model on a decoded image set.
pub(super) fn fit_images(
    spec: &ModelSpec,
    set: &ImageSet,
    device: &Device,
    progress: bool,
    checkpoints: &Checkpoints,
) -> Result<TrainedModel, MlError> {
    let started = Instant::now();
    let arch = validate(spec)?;
    let image_spec = spec.data.images.clone().unwrap_or_default();
    let split = Split::new(spec, set.index.rows, None)?;
    let preprocessing =
        ImagePreprocessing::fit(&image_spec, split.train.iter().map(|&r| &set.images[r]));
    let input = preprocessing.shape();
    let width = input.width();
    let all_x = preprocessing.encode(&set.images);
    let n_train = split.train.len();
    let train_x = gather(&all_x, width, &split.train);
    let targets = encode_targets(spec, &set.index, None, &split, n_train, device)?;
    let outputs = match spec.task {
        Task::Classification => targets.classes.len(),
        Task::Regression => 1,
    };
    let (initial, start) = choose(spec, arch, input, outputs, &targets.classes, checkpoints)?;
    let params = Parameters::init(arch, spec, input, outputs, initial.as_ref(), device)?;
    let x_train = Tensor::from_vec(train_x.clone(), (n_train, width), device)?;
    let x_val = Tensor::from_vec(
        gather(&all_x, width, &split.val),
        (split.val.len(), width),
        device,
    )?;
    let mut augment_rng = ChaCha8Rng::seed_from_u64(spec.training.seed);
    augment_rng.set_stream(AUGMENT_STREAM);
    let (train_ref, prep) = (&train_x, &preprocessing);
    let mut next_epoch = image_spec
        .augment
        .clone()
        .filter(|a| a.flip || a.random_crop > 0)
        .map(|augment| {
            move || -> Result<Tensor, MlError> {
                let mut x = train_ref.clone();
                prep.augment(&mut x, &augment, &mut augment_rng);
                Ok(Tensor::from_vec(x, (n_train, width), device)?)
            }
        });
    let curve = run_epochs(
        spec,
        &params,
        (&x_train, &targets.y_train),
        (&x_val, &targets.y_val),
        targets.target_scale,
        progress,
        next_epoch
            .as_mut()
            .map(|f| f as &mut dyn FnMut() -> Result<Tensor, MlError>),
    )?;
    let named = params.named();
    let mut predictor = Predictor {
        features: Vec::new(),
        image: Some(preprocessing.clone()),
        embedding: None,
        task: spec.task,
        classes: targets.classes.clone(),
        target_scale: targets.target_scale,
        inputs: width,
        network: params.network,
        device: device.clone(),
        temperature: 1.0,
    };
    let val_x = gather(&all_x, width, &split.val);
    let calibration =
        super::calibrate::calibrate(&mut predictor, &val_x, split.val.len(), &targets.val_labels)?;
    let val_pred = predictor.predict_encoded(val_x, split.val.len())?;
    let metrics = validation_metrics(spec.task, &targets, &val_pred);
    let reference = image_reference(spec, set, &all_x, &split, &targets, &predictor, &val_pred)?;
    predictor.embedding = reference.embedding.clone();
    finish(
        spec,
        Finished {
            started,
            named,
            input,
            outputs,
            features: Vec::new(),
            classes: targets.classes,
            target_scale: targets.target_scale,
            image: Some(preprocessing),
            reference,
            metrics,
            calibration,
            curve,
            start,
            data_stats: None,
            dataset: DatasetLineage {
                source: spec.data.source.clone(),
                digest: set.index.digest.clone(),
                rows: set.index.rows,
                training_rows: n_train,
                validation_rows: split.val.len(),
                feedback: None,
                files: Vec::new(),
                pruned_files: Vec::new(),
                window: None,
                bad_images: set
                    .bad
                    .iter()
                    .map(|b| format!("{}: {}", b.path, b.reason))
                    .collect(),
            },
            device,
        },
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use rand::Rng;

    use super::*;
    use crate::api::{ConvBlock, DataFormat, ImageChannels, ImageDataSpec, Pooling};
    use crate::data::{Cell, Pixels, Table};
    use crate::ml::vision::IMAGE_STATISTICS;

    /// A bar across a noisy 16×16 image: `horizontal` or `vertical`, anywhere.
    pub(crate) fn bar(horizontal: bool, rng: &mut ChaCha8Rng) -> Pixels {
        let at = rng.random_range(3..13usize);
        let mut values = vec![0u8; 256];
        for (i, v) in values.iter_mut().enumerate() {
            let (y, x) = (i / 16, i % 16);
            let on = if horizontal {
                y.abs_diff(at) <= 1
            } else {
                x.abs_diff(at) <= 1
            };
            *v = if on { 220 } else { 30 } + rng.random_range(0..30u8);
        }
        Pixels::from_raw(16, 16, 1, &values).unwrap()
    }

    pub(crate) fn bars(n: usize, seed: u64) -> ImageSet {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let horizontal = i % 2 == 0;
            images.push(bar(horizontal, &mut rng));
            labels.push(Cell::Text(
                if horizontal { "horizontal" } else { "vertical" }.into(),
            ));
        }
        ImageSet {
            index: Table {
                source: "bars".into(),
                names: vec!["label".into()],
                columns: vec![labels],
                rows: n,
                digest: "d".into(),
            },
            images,
            files: Vec::new(),
            bad: Vec::new(),
        }
    }

    pub(crate) fn cnn_spec() -> ModelSpec {
        let yaml = r#"
task: classification
data: {source: bars/, format: images, target: label}
architecture:
  type: cnn
  convBlocks: [{channels: 8}, {channels: 16}]
training: {epochs: 6, batchSize: 32, learningRate: 0.01, seed: 3}
"#;
        let mut spec: ModelSpec = serde_yaml::from_str(yaml).unwrap();
        spec.data.images = Some(ImageDataSpec {
            height: 16,
            width: 16,
            channels: ImageChannels::Grayscale,
            ..ImageDataSpec::default()
        });
        assert_eq!(spec.data.format, Some(DataFormat::Images));
        spec
    }

    #[tokio::test]
    async fn a_cnn_learns_bars_and_its_artifact_predicts_images_after_verification() {
        let spec = cnn_spec();
        let set = bars(160, 1);
        let model = fit_images(&spec, &set, &Device::Cpu, false, &Checkpoints::default()).unwrap();
        let m = &model.manifest;
        assert!(m.metrics["accuracy"] >= 0.95, "{:?}", m.metrics);
        assert_eq!(m.image.as_ref().unwrap().shape().width(), 256);
        assert!(
            m.tensors
                .iter()
                .any(|t| t.name == "conv1.weight" && t.shape == [16, 8, 3, 3])
        );
        assert!(m.tensors.iter().any(|t| t.name == "conv0.bn.running_var"));
        // What the drift monitor watches: image statistics, then embedding directions.
        let names: Vec<&str> = m.reference.features.iter().map(|f| f.name()).collect();
        assert_eq!(&names[..5], IMAGE_STATISTICS);
        assert!(
            names[5..]
                .iter()
                .all(|n| n.starts_with("embedding direction"))
        );
        assert_eq!(m.reference.importance.len(), names.len());
        assert_eq!(m.reference.embedding.as_ref().unwrap().dim(), 16);

        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("a").display().to_string();
        model.save(&out).await.unwrap();
        let loaded = crate::ml::LoadedModel::load(&out).await.unwrap();
        let fresh = bars(40, 99);
        let answer = loaded.predict_images(&fresh.images).unwrap();
        let truth = fresh.index.column("label", "t").unwrap();
        let right = answer
            .predictions
            .labels
            .iter()
            .zip(truth)
            .filter(|(p, t)| t.as_text().as_deref() == Some(p.as_str()))
            .count();
        assert!(right >= 38, "{right}/40 fresh bars right");
        assert_eq!(answer.monitored.len(), names.len());
        assert!(answer.monitored.iter().all(|c| c.len() == 40));

        // Same seed, same data: bit-identical weights.
        let again = fit_images(&spec, &set, &Device::Cpu, false, &Checkpoints::default()).unwrap();
        assert_eq!(again.weights_digest(), model.weights_digest());
        // The fingerprint covers the layer graph: another kernel or pooling is another model.
        let mut other = spec.clone();
        other.architecture.conv_blocks[1] = ConvBlock {
            channels: 16,
            kernel: 3,
            stride: 1,
            batch_norm: true,
            pool: Pooling::Avg,
        };
        let input = m.image.as_ref().unwrap().shape();
        let fp = |a: &crate::api::ArchitectureSpec| {
            crate::ml::artifact::fingerprint(a, spec.task, input, m.outputs, &m.tensors)
        };
        assert_eq!(fp(&spec.architecture), m.fingerprint);
        assert_ne!(fp(&other.architecture), m.fingerprint);
    }

    /// Bars plus a third class, `cross` (both bars), for fine-tuning on more classes.
    fn bars_and_crosses(n: usize, seed: u64) -> ImageSet {
        let mut set = bars(n, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 1000);
        for _ in 0..n / 2 {
            let (h, v) = (bar(true, &mut rng), bar(false, &mut rng));
            let rgb = h.rgb.iter().zip(&v.rgb).map(|(a, b)| *a.max(b)).collect();
            set.images.push(Pixels { rgb, ..h });
            set.index.columns[0].push(Cell::Text("cross".into()));
        }
        set.index.rows = set.images.len();
        set
    }

    fn checkpoint_of(model: &TrainedModel, uri: &str) -> super::super::start::Checkpoint {
        let bytes = model.weights.clone();
        super::super::start::Checkpoint {
            uri: uri.into(),
            weights_digest: model.weights_digest(),
            tensors: candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap(),
            fingerprint: Some(model.manifest.fingerprint.clone()),
            classes: Some(model.manifest.classes.clone()),
        }
    }

    fn tensor_bytes(model: &TrainedModel, name: &str) -> Vec<u8> {
        let st = safetensors::SafeTensors::deserialize(&model.weights).unwrap();
        st.tensor(name).unwrap().data().to_vec()
    }

    #[test]
    fn fine_tuning_a_base_on_more_classes_keeps_frozen_tensors_bit_identical() {
        let base = fit_images(
            &cnn_spec(),
            &bars(160, 1),
            &Device::Cpu,
            false,
            &Checkpoints::default(),
        )
        .unwrap();
        let mut spec = cnn_spec();
        spec.architecture.init = Some("mem://base".into());
        spec.training.freeze = vec!["conv".into()];
        spec.training.head_learning_rate = Some(0.05);
        let checkpoints = Checkpoints {
            champion: None,
            base: Some(checkpoint_of(&base, "mem://base")),
        };
        let tuned = fit_images(
            &spec,
            &bars_and_crosses(160, 2),
            &Device::Cpu,
            false,
            &checkpoints,
        )
        .unwrap();
        assert_eq!(tuned.manifest.classes, ["cross", "horizontal", "vertical"]);
        for t in tuned
            .manifest
            .tensors
            .iter()
            .filter(|t| t.name.starts_with("conv"))
        {
            assert_eq!(
                tensor_bytes(&tuned, &t.name),
                tensor_bytes(&base, &t.name),
                "{} moved",
                t.name
            );
        }
        assert_ne!(
            tensor_bytes(&tuned, "head0.bias").len(),
            tensor_bytes(&base, "head0.bias").len()
        );
        let start = tuned.manifest.start.as_ref().unwrap();
        assert_eq!(start.from, crate::ml::artifact::StartFrom::Checkpoint);
        assert_eq!(
            start.weights_digest.as_deref(),
            Some(base.weights_digest().as_str())
        );
        assert_eq!(
            start.reinitialised,
            ["head0.weight [2, 16] → [3, 16]", "head0.bias [2] → [3]"]
        );
        assert!(
            tuned.manifest.metrics["accuracy"] >= 0.9,
            "{:?}",
            tuned.manifest.metrics
        );

        // Without the freeze the same run moves the conv layers.
        spec.training.freeze.clear();
        let moved = fit_images(
            &spec,
            &bars_and_crosses(160, 2),
            &Device::Cpu,
            false,
            &checkpoints,
        )
        .unwrap();
        assert_ne!(
            tensor_bytes(&moved, "conv0.weight"),
            tensor_bytes(&base, "conv0.weight")
        );

        // A freeze entry that names nothing is refused with the tensors there are.
        spec.training.freeze = vec!["convolution".into()];
        let e = fit_images(
            &spec,
            &bars_and_crosses(40, 2),
            &Device::Cpu,
            false,
            &checkpoints,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`convolution` name no tensor") && e.contains("conv0.weight"),
            "{e}"
        );
    }

    #[test]
    fn a_base_checkpoint_of_another_shape_is_refused_listing_every_tensor() {
        let mut narrow = cnn_spec();
        narrow.architecture.conv_blocks[0].channels = 4;
        narrow.training.epochs = 1;
        let base = fit_images(
            &narrow,
            &bars(40, 1),
            &Device::Cpu,
            false,
            &Checkpoints::default(),
        )
        .unwrap();
        let mut spec = cnn_spec();
        spec.architecture.init = Some("file:///bases/narrow".into());
        let checkpoints = Checkpoints {
            champion: None,
            base: Some(checkpoint_of(&base, "file:///bases/narrow")),
        };
        let e = fit_images(&spec, &bars(40, 1), &Device::Cpu, false, &checkpoints)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("base checkpoint `file:///bases/narrow` does not fit architecture `cnn`"),
            "{e}"
        );
        for listed in [
            "`conv0.weight` is [4, 1, 3, 3]; expected [8, 1, 3, 3]",
            "`conv0.bn.weight` is [4]; expected [8]",
            "`conv0.bn.running_var` is [4]; expected [8]",
            "`conv1.weight` is [16, 4, 3, 3]; expected [16, 8, 3, 3]",
        ] {
            assert!(e.contains(listed), "{listed} not in: {e}");
        }
    }

    #[test]
    fn a_warm_start_takes_the_champions_weights_only_when_its_fingerprint_matches() {
        let spec = cnn_spec();
        let set = bars(160, 1);
        let champion =
            fit_images(&spec, &set, &Device::Cpu, false, &Checkpoints::default()).unwrap();
        let mut warm = spec.clone();
        warm.training.warm_start = crate::api::WarmStart::Champion;
        warm.training.epochs = 1;
        let checkpoints = Checkpoints {
            champion: Some(Ok(checkpoint_of(&champion, "file:///m/v1"))),
            base: None,
        };
        let v2 = fit_images(&warm, &set, &Device::Cpu, false, &checkpoints).unwrap();
        let start = v2.manifest.start.as_ref().unwrap();
        assert_eq!(start.from, crate::ml::artifact::StartFrom::Champion);
        assert_eq!(start.uri.as_deref(), Some("file:///m/v1"));
        assert_eq!(
            start.weights_digest.as_deref(),
            Some(champion.weights_digest().as_str())
        );
        assert!(
            v2.manifest.curve[0].validation_metric.unwrap() >= 0.95,
            "{:?}",
            v2.manifest.curve
        );

        // Another architecture: a cold start, and the lineage says why.
        let mut wider = warm.clone();
        wider.architecture.conv_blocks[1].channels = 24;
        let v3 = fit_images(&wider, &set, &Device::Cpu, false, &checkpoints).unwrap();
        let start = v3.manifest.start.as_ref().unwrap();
        assert_eq!(start.from, crate::ml::artifact::StartFrom::Random);
        let reason = start.cold_reason.as_deref().unwrap();
        assert!(
            reason.contains(&format!(
                "has architecture fingerprint {}",
                champion.manifest.fingerprint
            )),
            "{reason}"
        );
        assert!(
            reason.contains("the architecture, its input or its outputs changed"),
            "{reason}"
        );
        // A first version has no champion: cold, said so.
        let v1 = fit_images(&warm, &set, &Device::Cpu, false, &Checkpoints::default()).unwrap();
        assert_eq!(
            v1.manifest.start.unwrap().cold_reason.as_deref(),
            Some("there is no champion yet")
        );
    }
}
