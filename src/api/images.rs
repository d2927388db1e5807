//! The spec of image models: how image files become the tensor a network
//! sees (`data.images`), convolutional blocks (`architecture.convBlocks`) and
//! where a retrain's first weights come from (`training.warmStart`).

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::default_true;
use super::validate::msg;

/// Colour channels the model sees.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ImageChannels {
    /// One channel: luminance (ITU-R BT.601), whatever the file holds.
    Grayscale,
    /// Three channels.
    #[default]
    Rgb,
}

impl ImageChannels {
    /// Number of channels.
    pub fn count(self) -> usize {
        match self {
            ImageChannels::Grayscale => 1,
            ImageChannels::Rgb => 3,
        }
    }
}

/// Order of the three colour channels in the model's input.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ChannelOrder {
    #[default]
    Rgb,
    /// OpenCV's order, for weights trained on it.
    Bgr,
}

/// Seeded augmentations applied to training images only.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageAugmentation {
    /// Mirror half of the training images left to right (not for digits or text).
    #[serde(default)]
    pub flip: bool,
    /// Pad by this many pixels, then crop back to the input size at a random offset.
    #[serde(default)]
    pub random_crop: u32,
}

/// How image files become the model's input (`data.format: images`).
///
/// `data.source` is either a prefix of class folders
/// (`<prefix>/<class>/*.png`; the columns are then `path` and `label`) or a
/// CSV index (`path,label[,slice columns…]`, paths relative to the index).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageDataSpec {
    /// Height of the model's input in pixels, after resize and centre crop.
    #[x_kube(validation = Rule::new("self > 0").message(msg::IMAGE_SIZE))]
    pub height: u32,
    /// Width of the model's input in pixels, after resize and centre crop.
    #[x_kube(validation = Rule::new("self > 0").message(msg::IMAGE_SIZE))]
    pub width: u32,
    /// Resize so the shorter side has this many pixels, then crop the centre
    /// to `height × width`; unset resizes straight to `height × width`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message(msg::IMAGE_RESIZE))]
    pub resize: Option<u32>,
    #[serde(default)]
    pub channels: ImageChannels,
    #[serde(default, skip_serializing_if = "is_default")]
    pub channel_order: ChannelOrder,
    /// Per-channel mean of pixel values in [0, 1]; fitted on the training split when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub mean: Vec<f64>,
    /// Per-channel standard deviation; fitted on the training split when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    #[x_kube(validation = Rule::new("self.all(s, s > 0.0)").message(msg::IMAGE_STD))]
    pub std: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<ImageAugmentation>,
    /// Undecodable images skipped (and listed in the training log) before the run fails.
    #[serde(default)]
    pub max_bad_images: u32,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl Default for ImageDataSpec {
    fn default() -> Self {
        Self {
            height: 32,
            width: 32,
            resize: None,
            channels: ImageChannels::Rgb,
            channel_order: ChannelOrder::Rgb,
            mean: Vec::new(),
            std: Vec::new(),
            augment: None,
            max_bad_images: 0,
        }
    }
}

/// Pooling at the end of a conv block.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Pooling {
    /// 2×2 max pooling, stride 2.
    #[default]
    Max,
    /// 2×2 average pooling, stride 2.
    Avg,
    None,
}

/// One convolutional block: conv2d (same padding), batch norm, the
/// architecture's activation, then pooling.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConvBlock {
    /// Output channels.
    #[x_kube(validation = Rule::new("self > 0").message(msg::CONV_CHANNELS))]
    pub channels: u32,
    /// Square kernel size.
    #[serde(default = "default_kernel")]
    #[x_kube(validation = Rule::new("self > 0 && self % 2 == 1").message(msg::CONV_KERNEL))]
    pub kernel: u32,
    #[serde(default = "default_stride")]
    #[x_kube(validation = Rule::new("self > 0").message(msg::CONV_STRIDE))]
    pub stride: u32,
    #[serde(default = "default_true")]
    pub batch_norm: bool,
    #[serde(default)]
    pub pool: Pooling,
}

impl ConvBlock {
    /// "Same" padding for the odd kernel validation allows: `kernel / 2`.
    pub fn padding(&self) -> usize {
        self.kernel as usize / 2
    }

    /// The stride, at least 1.
    pub fn step(&self) -> usize {
        self.stride.max(1) as usize
    }
}

fn default_kernel() -> u32 {
    3
}
fn default_stride() -> u32 {
    1
}

/// Where a retrain's first weights come from.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum WarmStart {
    /// Random weights from the seed (or `architecture.init`).
    #[default]
    None,
    /// The current champion's weights, when its architecture fingerprint
    /// matches; otherwise a cold start, with the reason in the lineage.
    Champion,
}

impl WarmStart {
    /// Whether this is the default (`none`), which manifests leave out.
    pub fn is_none(&self) -> bool {
        *self == WarmStart::None
    }
}

/// Spatial size after `blocks` on a `height × width` input, or the first
/// block (0-based) that leaves nothing to convolve. The one home of the
/// conv geometry: validation and the `cnn` architecture both use it.
pub fn conv_output_size(
    blocks: &[ConvBlock],
    height: usize,
    width: usize,
) -> Result<(usize, usize), usize> {
    let (mut h, mut w) = (height, width);
    for (i, b) in blocks.iter().enumerate() {
        let stride = b.step();
        // Same padding: only the stride shrinks the map.
        h = h.div_ceil(stride);
        w = w.div_ceil(stride);
        if b.pool != Pooling::None {
            h /= 2;
            w /= 2;
        }
        if h == 0 || w == 0 {
            return Err(i);
        }
    }
    Ok((h, w))
}
