//! What an image model sees, reduced to a few numbers the sketches can
//! hold: projections of its penultimate embedding onto the leading
//! principal directions of the training embeddings.
//!
//! PCA rather than random projections: with a fixed, small number of
//! directions, the leading principal ones hold the most of the variance the
//! model's embedding actually has (a shift along them moves a sketch the
//! most), are the same for the same training set, and "direction 1" reads
//! as the main way the training images differ; random directions spread
//! that variance thinly over every direction and need many more of them.

use serde::{Deserialize, Serialize};

/// Directions kept: enough to see a shift, few enough to calibrate.
pub const EMBEDDING_DIRECTIONS: usize = 8;
/// Power iterations per direction.
const ITERATIONS: usize = 300;

/// The embedding's training mean and its leading principal directions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddingProjection {
    pub mean: Vec<f32>,
    /// Unit vectors by decreasing training variance.
    pub directions: Vec<Vec<f32>>,
}

/// The drift column name of direction `k` (0-based): `embedding direction 1`, ….
pub fn direction_name(k: usize) -> String {
    format!("embedding direction {}", k + 1)
}

impl EmbeddingProjection {
    /// Fits up to `k` directions on `rows × dim` embeddings (row-major) by
    /// power iteration on the covariance with deflation; directions with no
    /// variance left are dropped. Deterministic: the same embeddings give
    /// the same directions, signs included.
    pub fn fit(embeddings: &[f32], dim: usize, k: usize) -> EmbeddingProjection {
        let rows = embeddings.len() / dim.max(1);
        let mut mean = vec![0f64; dim];
        for row in embeddings.chunks_exact(dim) {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += f64::from(x);
            }
        }
        for m in &mut mean {
            *m /= rows.max(1) as f64;
        }
        let mut cov = vec![0f64; dim * dim];
        for row in embeddings.chunks_exact(dim) {
            let centred: Vec<f64> = row
                .iter()
                .zip(&mean)
                .map(|(&x, m)| f64::from(x) - m)
                .collect();
            for i in 0..dim {
                for j in i..dim {
                    cov[i * dim + j] += centred[i] * centred[j];
                }
            }
        }
        for i in 0..dim {
            for j in i..dim {
                cov[i * dim + j] /= rows.max(2) as f64 - 1.0;
                cov[j * dim + i] = cov[i * dim + j];
            }
        }
        let trace: f64 = (0..dim).map(|i| cov[i * dim + i]).sum();
        let mut directions = Vec::new();
        for _ in 0..k.min(dim) {
            // A start vector no eigenvector is orthogonal to in practice.
            let mut v: Vec<f64> = (0..dim).map(|i| 1.0 + (i as f64 * 0.618).fract()).collect();
            let mut lambda = 0.0;
            for _ in 0..ITERATIONS {
                let next: Vec<f64> = (0..dim)
                    .map(|i| (0..dim).map(|j| cov[i * dim + j] * v[j]).sum())
                    .collect();
                let norm = next.iter().map(|x| x * x).sum::<f64>().sqrt();
                if norm <= 0.0 {
                    break;
                }
                v = next.iter().map(|x| x / norm).collect();
                lambda = norm;
            }
            if lambda <= trace * 1e-9 || lambda <= 0.0 {
                break;
            }
            // Sign: the largest component positive.
            let largest = v
                .iter()
                .copied()
                .max_by(|a, b| a.abs().total_cmp(&b.abs()))
                .unwrap_or(1.0);
            if largest < 0.0 {
                v.iter_mut().for_each(|x| *x = -*x);
            }
            for i in 0..dim {
                for j in 0..dim {
                    cov[i * dim + j] -= lambda * v[i] * v[j];
                }
            }
            directions.push(v.iter().map(|&x| x as f32).collect());
        }
        EmbeddingProjection {
            mean: mean.iter().map(|&m| m as f32).collect(),
            directions,
        }
    }

    /// Width of the embeddings this projects.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// One embedding's coordinates along each direction.
    pub fn project(&self, embedding: &[f32]) -> Vec<f64> {
        self.directions
            .iter()
            .map(|d| {
                d.iter()
                    .zip(embedding.iter().zip(&self.mean))
                    .map(|(&w, (&x, &m))| f64::from(w) * f64::from(x - m))
                    .sum()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_direction_is_the_one_the_embeddings_vary_along_most() {
        // Points spread widely along (1, 1, 0)/√2, narrowly along (1, -1, 0)/√2, not at all on z.
        let mut e = Vec::new();
        for i in 0..200 {
            let t = (i as f32 - 100.0) / 10.0;
            let s = if i % 2 == 0 { 0.3 } else { -0.3 };
            e.extend([t + s + 5.0, t - s - 2.0, 1.0]);
        }
        let p = EmbeddingProjection::fit(&e, 3, EMBEDDING_DIRECTIONS);
        assert_eq!(p.directions.len(), 2, "no variance on z: two directions");
        let d = &p.directions[0];
        assert!(
            (d[0] - d[1]).abs() < 1e-3 && (d[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-3,
            "{d:?}"
        );
        let d2 = &p.directions[1];
        assert!((d2[0] + d2[1]).abs() < 1e-3, "{d2:?}");
        // The mean projects to the origin; a point along the first direction to its distance.
        let m = p.mean.clone();
        assert!(p.project(&m).iter().all(|x| x.abs() < 1e-4));
        let along = p.project(&[m[0] + 1.0, m[1] + 1.0, m[2]]);
        assert!((along[0] - 2f64.sqrt()).abs() < 1e-3, "{along:?}");
        assert_eq!(p, EmbeddingProjection::fit(&e, 3, EMBEDDING_DIRECTIONS));
        assert_eq!(direction_name(0), "embedding direction 1");
    }
}
