//! Labelled image sets: class folders under a prefix
//! (`<prefix>/<class>/*.png`) or a CSV index (`path,<target>[,slice
//! columns…]`, paths relative to the index). Undecodable images are skipped
//! with their paths in the log and counted; past `maxBadImages` the read fails.

use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use super::error::DataError;
use super::image::{DecodeLimits, Pixels, decode};
use super::store;
use super::table::{Cell, Table};

/// Files read at once from the store.
const CONCURRENT_READS: usize = 16;
/// File name endings of images in class folders.
const IMAGE_SUFFIXES: [&str; 3] = [".png", ".jpg", ".jpeg"];

/// An image that could not be used, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct BadImage {
    pub path: String,
    pub reason: String,
}

/// Decoded images with their index rows.
#[derive(Debug, Clone)]
pub struct ImageSet {
    /// One row per usable image, in image order: `path`, the label column
    /// and any other index columns (for slices). Its digest covers the
    /// index and every image's bytes.
    pub index: Table,
    pub images: Vec<Pixels>,
    /// The files of `images`, as read (what a client would send).
    pub files: Vec<bytes::Bytes>,
    /// Images skipped as undecodable.
    pub bad: Vec<BadImage>,
}

/// Whether a data source names a CSV index rather than a prefix of class folders.
pub fn is_index(source: &str) -> bool {
    source.to_ascii_lowercase().ends_with(".csv")
}

/// The directory a URI is in (`s3://b/sets/index.csv` → `s3://b/sets`).
fn parent(uri: &str) -> &str {
    uri.rfind('/').map_or(".", |i| &uri[..i])
}

/// An index path resolved against the index's directory.
fn resolve(index_uri: &str, path: &str) -> String {
    if path.contains("://") || path.starts_with('/') {
        path.to_string()
    } else {
        store::join(parent(index_uri), path)
    }
}

/// The index of a class-folder prefix: one row per image file, `path`
/// (relative to the prefix) and `target` (its folder).
async fn folder_index(prefix: &str, target: &str) -> Result<(Table, Vec<String>), DataError> {
    let base = format!("{}/", prefix.trim_end_matches('/'));
    let mut paths = Vec::new();
    let mut labels = Vec::new();
    let mut uris = Vec::new();
    for uri in store::list(prefix, "").await? {
        let lower = uri.to_ascii_lowercase();
        if !IMAGE_SUFFIXES.iter().any(|s| lower.ends_with(s)) {
            continue;
        }
        let relative = uri.strip_prefix(&base).unwrap_or(&uri).to_string();
        let Some((class, _)) = relative.split_once('/') else {
            tracing::warn!(%uri, "skipping an image outside any class folder");
            continue;
        };
        labels.push(Cell::Text(class.to_string()));
        paths.push(Cell::Text(relative.clone()));
        uris.push(uri);
    }
    let rows = uris.len();
    let table = Table {
        source: prefix.to_string(),
        names: vec!["path".into(), target.to_string()],
        columns: vec![paths, labels],
        rows,
        digest: String::new(),
    };
    Ok((table, uris))
}

/// Reads an image set and decodes its images; undecodable ones are
/// skipped and listed, and more than `max_bad` of them fail the read.
pub async fn read_image_set(
    source: &str,
    target: &str,
    limits: DecodeLimits,
    max_bad: u32,
) -> Result<ImageSet, DataError> {
    let mut hasher = Sha256::new();
    let (index, uris) = if is_index(source) {
        let bytes = store::read_bytes(source).await?;
        hasher.update(&bytes);
        let table = Table::from_csv(source, &bytes)?;
        table.column(target, "data.target")?;
        let uris = table
            .column("path", "the image index (`path,<target>,…`)")?
            .iter()
            .map(|c| resolve(source, &c.as_text().unwrap_or_default()))
            .collect();
        (table, uris)
    } else {
        folder_index(source, target).await?
    };
    if uris.is_empty() {
        return Err(DataError::NoImages {
            source_uri: source.into(),
        });
    }
    let files: Vec<bytes::Bytes> = futures::stream::iter(uris.iter().map(|u| store::read_bytes(u)))
        .buffered(CONCURRENT_READS)
        .try_collect()
        .await?;
    let mut images = Vec::with_capacity(files.len());
    let mut kept = Vec::with_capacity(files.len());
    let mut good = Vec::with_capacity(files.len());
    let mut bad = Vec::new();
    for (row, (uri, bytes)) in uris.iter().zip(&files).enumerate() {
        hasher.update(uri.as_bytes());
        hasher.update(bytes);
        match decode(bytes, limits) {
            Ok(pixels) => {
                images.push(pixels);
                kept.push(bytes.clone());
                good.push(row);
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!(path = %uri, %reason, "skipping an undecodable image");
                bad.push(BadImage {
                    path: uri.clone(),
                    reason,
                });
            }
        }
    }
    if bad.len() > max_bad as usize {
        let listed: Vec<String> = bad
            .iter()
            .take(5)
            .map(|b| format!("`{}` {}", b.path, b.reason))
            .collect();
        return Err(DataError::BadImages {
            source_uri: source.into(),
            count: bad.len(),
            max: max_bad,
            listed: listed.join("; "),
        });
    }
    if !bad.is_empty() {
        tracing::warn!(
            skipped = bad.len(),
            max_bad_images = max_bad,
            "undecodable images skipped"
        );
    }
    let mut index = index.select(&good);
    index.digest = hex::encode(hasher.finalize());
    if index.rows == 0 {
        return Err(DataError::NoImages {
            source_uri: source.into(),
        });
    }
    Ok(ImageSet {
        index,
        images,
        files: kept,
        bad,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(value: u8) -> Vec<u8> {
        let mut out = Vec::new();
        image::GrayImage::from_pixel(4, 4, image::Luma([value]))
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[tokio::test]
    async fn class_folders_label_images_and_bad_ones_are_counted_with_their_paths() {
        let tmp = tempfile::tempdir().unwrap();
        for (class, n) in [("cat", 2), ("dog", 1)] {
            std::fs::create_dir_all(tmp.path().join(class)).unwrap();
            for i in 0..n {
                std::fs::write(tmp.path().join(format!("{class}/{i}.png")), png(i * 50)).unwrap();
            }
        }
        std::fs::write(
            tmp.path().join("dog/broken.png"),
            b"\x89PNG\r\n\x1a\nnot really",
        )
        .unwrap();
        std::fs::write(tmp.path().join("dog/notes.txt"), b"ignored").unwrap();
        let prefix = tmp.path().display().to_string();
        let set = read_image_set(&prefix, "label", DecodeLimits::default(), 1)
            .await
            .unwrap();
        assert_eq!(set.images.len(), 3);
        let labels = set.index.column("label", "test").unwrap();
        assert_eq!(
            labels.iter().filter_map(Cell::as_text).collect::<Vec<_>>(),
            ["cat", "cat", "dog"]
        );
        assert_eq!(set.bad.len(), 1);
        assert!(set.bad[0].path.ends_with("dog/broken.png"), "{:?}", set.bad);
        assert!(set.bad[0].reason.contains("cannot be decoded as PNG"));
        assert_eq!(set.index.digest.len(), 64);

        let e = read_image_set(&prefix, "label", DecodeLimits::default(), 0)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("1 undecodable image")
                && e.contains("maxBadImages is 0")
                && e.contains("dog/broken.png"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn an_index_names_paths_relative_to_itself_and_keeps_slice_columns() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("img")).unwrap();
        std::fs::write(tmp.path().join("img/a.png"), png(10)).unwrap();
        std::fs::write(tmp.path().join("img/b.png"), png(200)).unwrap();
        std::fs::write(
            tmp.path().join("index.csv"),
            "path,digit,camera\nimg/a.png,1,old\nimg/b.png,7,new\n",
        )
        .unwrap();
        let index = tmp.path().join("index.csv").display().to_string();
        let set = read_image_set(&index, "digit", DecodeLimits::default(), 0)
            .await
            .unwrap();
        assert_eq!(set.images[1].rgb[0], 200);
        assert_eq!(
            set.index.column("camera", "t").unwrap()[1],
            Cell::Text("new".into())
        );
        let e = read_image_set(&index, "label", DecodeLimits::default(), 0)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("column `label` missing"), "{e}");
    }
}
