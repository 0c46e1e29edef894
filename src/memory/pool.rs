//! The memories a batch holds in memory for its duplicate checks: those it has created so far
//! (a batch writes its new embeddings at its end, so the tenant's search does not read them: one
//! exact read of the whole batch per memory would make a batch quadratic in SQL) and, for a
//! tenant small enough, every memory stored before the call (read once, so that no memory of the
//! batch pays an index search). Plain Rust, tested without a server.

use std::collections::HashMap;

use crate::vector::cosine;

/// What the scaled integer dot product may differ from the exact one by, beyond its rounding
/// bound: single-precision arithmetic on numbers of about 1.
const SLACK: f32 = 1e-4;

/// Memories of a batch's tenant: ids, the keys and embeddings of those the batch created, and
/// every one as a unit vector in 8 bits (which the scan reads: a quarter of the bytes of single
/// precision, and the scan's speed is the memory's).
pub struct Pool<Id> {
    ids: Vec<Id>,
    keys: HashMap<String, usize>,
    /// Whether the batch created the memory (else it was stored before the call).
    created: Vec<bool>,
    /// The embedding as given (created) or as a unit vector (stored before), for the exact
    /// similarity of the candidates the scan finds.
    exact: Vec<Vec<f32>>,
    /// The unit vectors in 8 bits, one after the other: each component times the vector's
    /// scale, rounded.
    codes: Vec<i8>,
    /// 1 / the scale of each (max |component| / 127; 0 for a zero vector).
    inv_scale: Vec<f32>,
    /// The L1 norm of each unit vector.
    l1: Vec<f32>,
    /// The largest of `inv_scale` and of `l1`: a rounding bound that holds for every entry.
    max_inv_scale: f32,
    max_l1: f32,
}

/// A memory near the one being remembered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Near<Id> {
    pub id: Id,
    pub similarity: f64,
    /// Created by this batch (alive); else stored before (the caller checks its expiry).
    pub created: bool,
}

impl<Id: Copy + Ord> Default for Pool<Id> {
    fn default() -> Self {
        Pool {
            ids: Vec::new(),
            keys: HashMap::new(),
            created: Vec::new(),
            exact: Vec::new(),
            codes: Vec::new(),
            inv_scale: Vec::new(),
            l1: Vec::new(),
            max_inv_scale: 0.0,
            max_l1: 0.0,
        }
    }
}

/// `v` scaled to length 1 (zeros for a zero vector).
fn unit(v: &[f32]) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt();
    let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    v.iter().map(|&x| (x as f64 * scale) as f32).collect()
}

/// A unit vector in 8 bits: the codes round(u_i * s) with s = 127 / max |u_i| (each within
/// 0.5 / s of u_i * s / s), 1 / s, and the L1 norm of `u`.
fn quantize(u: &[f32]) -> (Vec<i8>, f32, f32) {
    let max = u.iter().fold(0f32, |m, &x| m.max(x.abs()));
    let l1 = u.iter().map(|x| x.abs()).sum();
    if max == 0.0 {
        return (vec![0; u.len()], 0.0, l1);
    }
    let s = 127.0 / max;
    let codes = u
        .iter()
        .map(|&x| (x * s).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (codes, max / 127.0, l1)
}

/// The most the scaled integer dot product of two quantized unit vectors u, v of `dims`
/// components can differ from u . v: with u' = codes / s, |u . v - u' . v'| <= |(u - u') . v| +
/// |u' . (v - v')| <= e_u |v|_1 + e_v (|u|_1 + dims e_u), where e = 0.5 / s.
fn rounding_bound(dims: usize, inv_a: f32, l1_a: f32, inv_b: f32, l1_b: f32) -> f32 {
    let (ea, eb) = (0.5 * inv_a, 0.5 * inv_b);
    ea * l1_b + eb * (l1_a + dims as f32 * ea)
}

impl<Id: Copy + Ord> Pool<Id> {
    /// The memory created with `key`.
    pub fn by_key(&self, key: &str) -> Option<Id> {
        self.keys.get(key).map(|&i| self.ids[i])
    }

    fn add(&mut self, id: Id, created: bool, exact: Vec<f32>, unit: &[f32]) {
        let (codes, inv, l1) = quantize(unit);
        self.codes.extend(codes);
        self.inv_scale.push(inv);
        self.l1.push(l1);
        self.max_inv_scale = self.max_inv_scale.max(inv);
        self.max_l1 = self.max_l1.max(l1);
        self.ids.push(id);
        self.created.push(created);
        self.exact.push(exact);
    }

    /// A memory stored before the call (all of one dimension).
    pub fn know(&mut self, id: Id, embedding: &[f32]) {
        let u = unit(embedding);
        self.add(id, false, u.clone(), &u);
    }

    /// A memory created: its id, key and embedding (of the batch's model; a zero vector is
    /// kept but never found as a duplicate).
    pub fn push(&mut self, id: Id, key: String, embedding: Vec<f32>) {
        let u = unit(&embedding);
        self.keys.insert(key, self.ids.len());
        self.add(id, true, embedding, &u);
    }

    /// The memories at `threshold` cosine similarity of `embedding` or above, most similar
    /// first (of equals, the smallest id), each with its similarity in double precision (as
    /// `crate::vector::cosine`; for a memory stored before, from its unit vector in single
    /// precision: the same to about 1e-7). The scan compares 8-bit codes and keeps every memory
    /// whose bound on the rounding does not rule it out.
    pub fn near(&self, embedding: &[f32], threshold: f64) -> Vec<Near<Id>> {
        let dims = embedding.len();
        let u = unit(embedding);
        if dims == 0 || u.iter().all(|&x| x == 0.0) {
            return Vec::new();
        }
        let (q, q_inv, q_l1) = quantize(&u);
        let floor = threshold as f32 - SLACK;
        // a first cut with a rounding bound that holds for every entry (the bound grows with
        // both), then each entry's own
        let loosest = rounding_bound(dims, q_inv, q_l1, self.max_inv_scale, self.max_l1);
        let mut out: Vec<Near<Id>> = Vec::new();
        for (i, d) in dots(&q, &self.codes).into_iter().enumerate() {
            let inv = self.inv_scale[i];
            let approx = d as f32 * q_inv * inv;
            if approx + loosest < floor
                || approx + rounding_bound(dims, q_inv, q_l1, inv, self.l1[i]) < floor
            {
                continue;
            }
            let Some(sim) = cosine(embedding, &self.exact[i])
                .ok()
                .flatten()
                .filter(|s| *s >= threshold)
            else {
                continue;
            };
            out.push(Near {
                id: self.ids[i],
                similarity: sim,
                created: self.created[i],
            });
        }
        out.sort_by(|a, b| {
            b.similarity
                .total_cmp(&a.similarity)
                .then_with(|| a.id.cmp(&b.id))
        });
        out
    }

    /// The memories created, in order: (id, embedding).
    pub fn into_created(self) -> impl Iterator<Item = (Id, Vec<f32>)> {
        self.ids
            .into_iter()
            .zip(self.created)
            .zip(self.exact)
            .filter_map(|((id, created), e)| created.then_some((id, e)))
    }
}

/// The dot products of `q` with each of `codes` (one after the other, `q.len()` each), in order.
fn dots(q: &[i8], codes: &[i8]) -> Vec<i32> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2 (checked just above)
        return unsafe { dots_avx2(q, codes) };
    }
    codes
        .chunks_exact(q.len())
        .map(|c| dot_i8_lanes(q, c))
        .collect()
}

/// [`dots`] with AVX2 (the dot product inlined into the loop).
///
/// # Safety
/// The processor must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dots_avx2(q: &[i8], codes: &[i8]) -> Vec<i32> {
    codes
        .chunks_exact(q.len())
        // SAFETY: the caller's processor has AVX2
        .map(|c| unsafe { dot_i8_avx2(q, c) })
        .collect()
}

/// The dot product of two code vectors in plain Rust (the compiler vectorises it), exact in 32
/// bits (|sum| <= 4 000 x 127^2).
fn dot_i8_lanes(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let rest: i32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| x as i32 * y as i32)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] as i32 * y[i] as i32;
        }
    }
    acc.iter().sum::<i32>() + rest
}

/// The same with AVX2: sixteen codes widened to 16 bits, multiplied and added in pairs
/// (`vpmaddwd`), two such steps a round.
///
/// # Safety
/// The processor must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_si256();
    let mut acc1 = _mm256_setzero_si256();
    let mut i = 0;
    // SAFETY: every load reads 16 bytes at i + 16 <= n of both slices
    unsafe {
        let wide = |p: *const i8| _mm256_cvtepi8_epi16(_mm_loadu_si128(p as *const __m128i));
        while i + 32 <= n {
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(wide(pa.add(i)), wide(pb.add(i))));
            acc1 = _mm256_add_epi32(
                acc1,
                _mm256_madd_epi16(wide(pa.add(i + 16)), wide(pb.add(i + 16))),
            );
            i += 32;
        }
        if i + 16 <= n {
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(wide(pa.add(i)), wide(pb.add(i))));
            i += 16;
        }
    }
    let mut lanes = [0i32; 8];
    // SAFETY: 8 integers stored into an array of 8
    unsafe {
        _mm256_storeu_si256(
            lanes.as_mut_ptr() as *mut __m256i,
            _mm256_add_epi32(acc0, acc1),
        )
    };
    lanes.iter().sum::<i32>()
        + a[i..n]
            .iter()
            .zip(&b[i..n])
            .map(|(&x, &y)| x as i32 * y as i32)
            .sum::<i32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn pool(vs: &[(u32, &str, Vec<f32>)]) -> Pool<u32> {
        let mut p = Pool::default();
        for (id, k, v) in vs {
            p.push(*id, k.to_string(), v.clone());
        }
        p
    }

    /// Deterministic numbers in [-1, 1).
    fn noise(seed: u64) -> impl FnMut() -> f32 {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 20_000) as f32 / 10_000.0 - 1.0
        }
    }

    #[test]
    fn the_integer_dot_product_of_every_length_is_the_plain_sum() {
        let mut r = noise(1);
        for n in [1usize, 15, 16, 17, 31, 32, 33, 384, 1537, 4000] {
            let a: Vec<i8> = (0..n).map(|_| (r() * 127.0) as i8).collect();
            let b: Vec<i8> = (0..n).map(|_| (r() * 127.0) as i8).collect();
            let plain: i32 = a.iter().zip(&b).map(|(&x, &y)| x as i32 * y as i32).sum();
            assert_eq!(dots(&a, &b), vec![plain], "{n}");
            assert_eq!(dot_i8_lanes(&a, &b), plain, "{n}");
        }
        // the extremes: 4 000 x 127 x 127 fits
        let a = vec![-127i8; 4000];
        assert_eq!(dots(&a, &a), vec![4000 * 127 * 127]);
        // several at once, in order
        let q = [1i8, 2, 3];
        assert_eq!(
            dots(&q, &[1, 0, 0, 0, 1, 0, 0, 0, 1, -1, -1, -1]),
            vec![1, 2, 3, -6]
        );
    }

    #[test]
    fn the_rounding_bound_holds_for_every_pair() {
        for dims in [3usize, 384, 1536] {
            let mut r = noise(dims as u64);
            let vs: Vec<Vec<f32>> = (0..40)
                .map(|k| {
                    // some spread, some with one large component
                    (0..dims)
                        .map(|d| if k % 5 == 0 && d == 0 { 20.0 } else { r() })
                        .collect()
                })
                .collect();
            for (i, a) in vs.iter().enumerate() {
                for (j, b) in vs.iter().enumerate() {
                    let (ua, ub) = (unit(a), unit(b));
                    let ((qa, ia, la), (qb, ib, lb)) = (quantize(&ua), quantize(&ub));
                    let approx = dots(&qa, &qb)[0] as f64 * ia as f64 * ib as f64;
                    let exact = cosine(a, b).unwrap().unwrap();
                    let bound = rounding_bound(dims, ia, la, ib, lb) as f64;
                    assert!(
                        (exact - approx).abs() <= bound + 1e-5,
                        "{dims}: exact {exact}, approx {approx}, bound {bound}"
                    );
                    // tight where no component stands out (a spike makes the steps coarse)
                    if i % 5 != 0 && j % 5 != 0 {
                        assert!(bound < 0.03, "{dims}: bound {bound}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_scan_finds_what_a_full_comparison_finds() {
        // clusters of near vectors: many pairs near every threshold
        let dims = 384;
        let mut r = noise(7);
        let centres: Vec<Vec<f32>> = (0..5).map(|_| (0..dims).map(|_| r()).collect()).collect();
        let vs: Vec<Vec<f32>> = (0..300)
            .map(|i| centres[i % 5].iter().map(|c| c + 0.25 * r()).collect())
            .collect();
        let mut p: Pool<u32> = Pool::default();
        for (i, v) in vs.iter().enumerate() {
            if i % 2 == 0 {
                p.push(i as u32, format!("k{i}"), v.clone());
            } else {
                p.know(i as u32, v);
            }
        }
        for t in [0.5, 0.9, 0.95, 0.97] {
            for q in vs.iter().step_by(7) {
                let mut want: Vec<(u32, f64)> = vs
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| {
                        let s = cosine(q, v).unwrap().unwrap();
                        (s >= t).then_some((i as u32, s))
                    })
                    .collect();
                want.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                let got = p.near(q, t);
                assert_eq!(
                    got.iter().map(|n| n.id).collect::<Vec<_>>(),
                    want.iter().map(|w| w.0).collect::<Vec<_>>(),
                    "threshold {t}"
                );
                for (g, w) in got.iter().zip(&want) {
                    assert_relative_eq!(g.similarity, w.1, epsilon = 1e-6);
                    assert_eq!(g.created, g.id % 2 == 0);
                }
            }
        }
    }

    #[test]
    fn keys_find_the_memory_created_with_them() {
        let mut p = pool(&[(1, "a", vec![1.0, 0.0]), (2, "b", vec![0.0, 1.0])]);
        p.know(3, &[1.0, 1.0]);
        assert_eq!(p.by_key("a"), Some(1));
        assert_eq!(p.by_key("b"), Some(2));
        assert_eq!(p.by_key("c"), None);
        // a memory stored before has no key in the pool: the store finds it by its key
    }

    fn first(p: &Pool<u32>, q: &[f32], threshold: f64) -> Option<(u32, f64)> {
        p.near(q, threshold).first().map(|n| (n.id, n.similarity))
    }

    #[test]
    fn the_nearest_within_the_threshold_with_its_exact_similarity() {
        let p = pool(&[
            (1, "a", vec![1.0, 0.0, 0.0]),
            (2, "b", vec![1.0, 0.2, 0.0]),
            (3, "c", vec![0.0, 0.0, 3.0]),
        ]);
        let q = [1.0f32, 0.25, 0.0];
        let near = p.near(&q, 0.9);
        assert_eq!(near.iter().map(|n| n.id).collect::<Vec<_>>(), vec![2, 1]);
        assert!(near.iter().all(|n| n.created));
        assert_relative_eq!(
            near[0].similarity,
            cosine(&q, &[1.0, 0.2, 0.0]).unwrap().unwrap(),
            epsilon = 1e-12
        );
        // above every similarity: none
        assert_eq!(first(&p, &q, 0.9999), None);
        // the length does not matter, the direction does
        assert_eq!(first(&p, &[0.0, 0.0, 0.5], 0.99).map(|n| n.0), Some(3));
    }

    #[test]
    fn memories_stored_before_are_found_as_well_and_marked() {
        let mut p = pool(&[(1, "a", vec![1.0, 0.0, 0.0])]);
        p.know(5, &[2.0, 0.3, 0.0]);
        p.know(6, &[0.0, 1.0, 0.0]);
        let q = [1.0f32, 0.2, 0.0];
        let near = p.near(&q, 0.95);
        assert_eq!(
            near.iter().map(|n| (n.id, n.created)).collect::<Vec<_>>(),
            vec![(5, false), (1, true)]
        );
        assert_relative_eq!(
            near[0].similarity,
            cosine(&q, &[2.0, 0.3, 0.0]).unwrap().unwrap(),
            epsilon = 1e-6
        );
        // stored memories are never written again
        assert_eq!(p.into_created().map(|c| c.0).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn equals_go_to_the_smallest_id_and_zero_vectors_match_nothing() {
        let p = pool(&[
            (7, "a", vec![0.0, 2.0]),
            (4, "b", vec![0.0, 1.0]),
            (9, "z", vec![0.0, 0.0]),
        ]);
        assert_eq!(first(&p, &[0.0, 5.0], 0.95).map(|n| n.0), Some(4));
        assert_eq!(first(&p, &[0.0, 0.0], -1.0), None);
        assert_eq!(
            p.near(&[1.0, 0.0], -1.0)
                .iter()
                .map(|n| n.id)
                .collect::<Vec<_>>(),
            vec![4, 7]
        );
    }

    #[test]
    fn the_threshold_is_exact_at_its_edge() {
        // cos = 0.6 exactly (3-4-5): found at 0.6, not above
        let p = pool(&[(1, "a", vec![3.0, 4.0])]);
        let q = [1.0f32, 0.0];
        assert!(first(&p, &q, 0.6).is_some());
        assert!(first(&p, &q, 0.600_001).is_none());
    }

    #[test]
    fn created_memories_come_back_in_order() {
        let p = pool(&[(3, "a", vec![1.0]), (1, "b", vec![2.0])]);
        let got: Vec<(u32, Vec<f32>)> = p.into_created().collect();
        assert_eq!(got, vec![(3, vec![1.0]), (1, vec![2.0])]);
    }
}
