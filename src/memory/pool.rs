//! The memories a batch holds in memory for its duplicate checks: those it has created so far
//! (a batch writes its new embeddings at its end, so the tenant's search does not read them: one
//! exact read of the whole batch per memory would make a batch quadratic in SQL) and, for a
//! tenant small enough, every memory stored before the call (read once, so that no memory of the
//! batch pays an index search). Plain Rust, tested without a server.

use std::collections::HashMap;

use crate::vector::cosine;

/// How far below a threshold a similarity computed in f64 may fall and still meet it: two
/// copies of one vector come out at 1 to within a few units of f64's last place, not at 1.
pub const SAME: f64 = 1e-12;

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
    /// The embedding as given, for the exact similarity of the candidates the scan finds.
    exact: Vec<Vec<f32>>,
    /// The unit vectors in 8 bits, one after the other: each component times the vector's
    /// scale, rounded.
    codes: Vec<i8>,
    /// 1 / the scale of each (max |component| / 127; 0 for a zero vector).
    inv_scale: Vec<f32>,
    /// The sum of each one's codes (the VNNI kernel multiplies unsigned bytes: q + 128).
    sums: Vec<i32>,
    /// The L1 norm of each unit vector.
    l1: Vec<f32>,
    /// The products of a scan, kept from one scan to the next (a fresh buffer of a megabyte a
    /// scan cost a page fault per page).
    products: Vec<i32>,
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
            sums: Vec::new(),
            l1: Vec::new(),
            products: Vec::new(),
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
        self.sums.push(codes.iter().map(|&c| c as i32).sum());
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
        // the embedding as stored, not its unit vector rounded to single precision: a memory
        // told again with the same vector is at similarity 1 (to f64's rounding) as `remember`
        // finds it, so a dedup_threshold of 1 takes it (it came out just under 1)
        let u = unit(embedding);
        self.add(id, false, embedding.to_vec(), &u);
    }

    /// A memory created: its id, key and embedding (of the batch's model; a zero vector is
    /// kept but never found as a duplicate).
    pub fn push(&mut self, id: Id, key: String, embedding: Vec<f32>) {
        let u = unit(&embedding);
        self.keys.insert(key, self.ids.len());
        self.add(id, true, embedding, &u);
    }

    /// How many memories it holds; [`Pool::near_since`] reads those added after a count.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The memories added since the pool held `from` (0: all) at `threshold` cosine similarity
    /// of `embedding` or above, most similar first (of equals, the smallest id), each with its
    /// similarity in double precision (as `crate::vector::cosine`; for a memory stored before,
    /// from its unit vector in single precision: the same to about 1e-7). The scan compares 8-bit codes and keeps every memory
    /// whose bound on the rounding does not rule it out.
    pub fn near_since(&mut self, embedding: &[f32], threshold: f64, from: usize) -> Vec<Near<Id>> {
        self.near_many(&[embedding], threshold, from)
            .pop()
            .unwrap_or_default()
    }

    /// [`Pool::near_since`] for each of `embeddings` (of one dimension): each memory's codes are
    /// read once for all of them.
    pub fn near_many(
        &mut self,
        embeddings: &[&[f32]],
        threshold: f64,
        from: usize,
    ) -> Vec<Vec<Near<Id>>> {
        let mut out: Vec<Vec<Near<Id>>> = vec![Vec::new(); embeddings.len()];
        let dims = embeddings.first().map_or(0, |e| e.len());
        if dims == 0 || from >= self.ids.len() {
            return out;
        }
        // the queries as unit vectors in 8 bits; a zero vector finds nothing
        let queries: Vec<(usize, Vec<i8>, f32, f32)> = embeddings
            .iter()
            .enumerate()
            .filter_map(|(k, e)| {
                let u = unit(e);
                if u.iter().all(|&x| x == 0.0) {
                    return None;
                }
                let (q, inv, l1) = quantize(&u);
                Some((k, q, inv, l1))
            })
            .collect();
        if queries.is_empty() {
            return out;
        }
        let codes: Vec<&[i8]> = queries.iter().map(|q| q.1.as_slice()).collect();
        let mut products = std::mem::take(&mut self.products);
        dots(
            &codes,
            &self.codes[from * dims..],
            &self.sums[from..],
            &mut products,
        );
        let floor = threshold as f32 - SLACK;
        for (j, (k, _, q_inv, q_l1)) in queries.iter().enumerate() {
            let embedding = embeddings[*k];
            // a first cut with a rounding bound that holds for every entry (the bound grows
            // with both), then each entry's own
            let loosest = rounding_bound(dims, *q_inv, *q_l1, self.max_inv_scale, self.max_l1);
            let found = &mut out[*k];
            for (n, row) in products.chunks_exact(queries.len()).enumerate() {
                let i = from + n;
                let inv = self.inv_scale[i];
                let approx = row[j] as f32 * q_inv * inv;
                if approx + loosest < floor
                    || approx + rounding_bound(dims, *q_inv, *q_l1, inv, self.l1[i]) < floor
                {
                    continue;
                }
                let Some(sim) = cosine(embedding, &self.exact[i])
                    .ok()
                    .flatten()
                    .filter(|s| *s >= threshold - SAME)
                else {
                    continue;
                };
                found.push(Near {
                    id: self.ids[i],
                    similarity: sim,
                    created: self.created[i],
                });
            }
            best_first(found);
        }
        self.products = products;
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

/// Most similar first; of equals, the smallest id.
pub fn best_first<Id: Ord>(near: &mut [Near<Id>]) {
    near.sort_by(|a, b| {
        b.similarity
            .total_cmp(&a.similarity)
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// The dot products of each of `queries` with each row of `codes` (one after the other, of the
/// queries' length; `sums` the sum of each row's codes), row by row: `rows x queries.len()`.
/// With AVX-512 VNNI or AVX2 where the processor has them (checked at run time).
fn dots(queries: &[&[i8]], codes: &[i8], sums: &[i32], out: &mut Vec<i32>) {
    out.clear();
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni")
        {
            // SAFETY: the processor has these features (checked just above)
            return unsafe { dots_vnni(queries, codes, sums, out) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has AVX2 (checked just above)
            return unsafe { dots_avx2(queries, codes, out) };
        }
    }
    dots_lanes(queries, codes, out)
}

/// [`dots`] in plain Rust.
fn dots_lanes(queries: &[&[i8]], codes: &[i8], out: &mut Vec<i32>) {
    let dims = queries.first().map_or(1, |q| q.len().max(1));
    for row in codes.chunks_exact(dims) {
        out.extend(queries.iter().map(|q| dot_i8_lanes(q, row)));
    }
}

/// [`dots`] with AVX2 (the dot product inlined into the loop; a row stays in the first-level
/// cache for every query).
///
/// # Safety
/// The processor must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dots_avx2(queries: &[&[i8]], codes: &[i8], out: &mut Vec<i32>) {
    let dims = queries.first().map_or(1, |q| q.len().max(1));
    for row in codes.chunks_exact(dims) {
        // SAFETY: the caller's processor has AVX2
        out.extend(queries.iter().map(|q| unsafe { dot_i8_avx2(q, row) }));
    }
}

/// [`dots`] with AVX-512 VNNI: `vpdpbusd` multiplies 64 unsigned bytes by 64 signed ones and adds
/// them in fours, so each query is shifted to q + 128 (1..255) and 128 x the row's sum taken off.
///
/// # Safety
/// The processor must have AVX-512 F, BW and VNNI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn dots_vnni(queries: &[&[i8]], codes: &[i8], sums: &[i32], out: &mut Vec<i32>) {
    use std::arch::x86_64::*;
    let dims = queries.first().map_or(1, |q| q.len().max(1));
    let shifted: Vec<Vec<u8>> = queries
        .iter()
        .map(|q| q.iter().map(|&c| (c as i16 + 128) as u8).collect())
        .collect();
    let whole = dims / 64 * 64;
    let tail = |q: &[u8], row: &[i8]| -> i32 {
        q[whole..]
            .iter()
            .zip(&row[whole..])
            .map(|(&x, &y)| x as i32 * y as i32)
            .sum()
    };
    for (row, &sum) in codes.chunks_exact(dims).zip(sums) {
        let r = row.as_ptr();
        let mut groups = shifted.chunks_exact(4);
        // four queries at a time, in four independent sums held in registers (one `vpdpbusd`
        // waits for the one before it into the same sum)
        for qs in groups.by_ref() {
            let (p0, p1, p2, p3) = (
                qs[0].as_ptr(),
                qs[1].as_ptr(),
                qs[2].as_ptr(),
                qs[3].as_ptr(),
            );
            let (mut a0, mut a1, mut a2, mut a3) = (
                _mm512_setzero_si512(),
                _mm512_setzero_si512(),
                _mm512_setzero_si512(),
                _mm512_setzero_si512(),
            );
            let mut i = 0;
            // SAFETY: every load reads 64 bytes at i + 64 <= dims of the row and the queries
            unsafe {
                while i < whole {
                    let b = _mm512_loadu_si512(r.add(i) as *const _);
                    a0 = _mm512_dpbusd_epi32(a0, _mm512_loadu_si512(p0.add(i) as *const _), b);
                    a1 = _mm512_dpbusd_epi32(a1, _mm512_loadu_si512(p1.add(i) as *const _), b);
                    a2 = _mm512_dpbusd_epi32(a2, _mm512_loadu_si512(p2.add(i) as *const _), b);
                    a3 = _mm512_dpbusd_epi32(a3, _mm512_loadu_si512(p3.add(i) as *const _), b);
                    i += 64;
                }
            }
            for (a, q) in [a0, a1, a2, a3].into_iter().zip(qs) {
                out.push(_mm512_reduce_add_epi32(a) + tail(q, row) - 128 * sum);
            }
        }
        for q in groups.remainder() {
            let mut a = _mm512_setzero_si512();
            let mut i = 0;
            // SAFETY: as above
            unsafe {
                while i < whole {
                    let b = _mm512_loadu_si512(r.add(i) as *const _);
                    a = _mm512_dpbusd_epi32(
                        a,
                        _mm512_loadu_si512(q.as_ptr().add(i) as *const _),
                        b,
                    );
                    i += 64;
                }
            }
            out.push(_mm512_reduce_add_epi32(a) + tail(q, row) - 128 * sum);
        }
    }
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

    /// [`dots`] of one query.
    fn dots1(q: &[i8], codes: &[i8]) -> Vec<i32> {
        let sums: Vec<i32> = codes
            .chunks_exact(q.len())
            .map(|r| r.iter().map(|&c| c as i32).sum())
            .collect();
        let mut out = Vec::new();
        dots(&[q], codes, &sums, &mut out);
        out
    }

    #[test]
    fn the_integer_dot_product_of_every_length_is_the_plain_sum() {
        let mut r = noise(1);
        for n in [1usize, 15, 16, 17, 31, 32, 33, 63, 64, 65, 384, 1537, 4000] {
            let a: Vec<i8> = (0..n).map(|_| (r() * 127.0) as i8).collect();
            let b: Vec<i8> = (0..n).map(|_| (r() * 127.0) as i8).collect();
            let plain: i32 = a.iter().zip(&b).map(|(&x, &y)| x as i32 * y as i32).sum();
            assert_eq!(dots1(&a, &b), vec![plain], "{n}");
            assert_eq!(dot_i8_lanes(&a, &b), plain, "{n}");
        }
        // the extremes: 4 000 x 127 x 127 fits
        let a = vec![-127i8; 4000];
        assert_eq!(dots1(&a, &a), vec![4000 * 127 * 127]);
        let b = vec![127i8; 4000];
        assert_eq!(dots1(&a, &b), vec![-4000 * 127 * 127]);
        // several rows, in order
        assert_eq!(
            dots1(&[1, 2, 3], &[1, 0, 0, 0, 1, 0, 0, 0, 1, -1, -1, -1]),
            vec![1, 2, 3, -6]
        );
    }

    #[test]
    fn every_kernel_gives_the_plain_products_row_by_row() {
        let mut r = noise(3);
        for dims in [5usize, 64, 100, 384, 1536] {
            let queries: Vec<Vec<i8>> = (0..7)
                .map(|_| (0..dims).map(|_| (r() * 127.0) as i8).collect())
                .collect();
            let codes: Vec<i8> = (0..dims * 33).map(|_| (r() * 127.0) as i8).collect();
            let sums: Vec<i32> = codes
                .chunks_exact(dims)
                .map(|row| row.iter().map(|&c| c as i32).sum())
                .collect();
            let qs: Vec<&[i8]> = queries.iter().map(Vec::as_slice).collect();
            let mut want = Vec::new();
            for row in codes.chunks_exact(dims) {
                for q in &qs {
                    want.push(
                        q.iter()
                            .zip(row)
                            .map(|(&x, &y)| x as i32 * y as i32)
                            .sum::<i32>(),
                    );
                }
            }
            let mut out = Vec::new();
            dots(&qs, &codes, &sums, &mut out);
            assert_eq!(out, want, "{dims}");
            out.clear();
            dots_lanes(&qs, &codes, &mut out);
            assert_eq!(out, want, "{dims}");
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the processor has AVX2
                    out.clear();
                    unsafe { dots_avx2(&qs, &codes, &mut out) };
                    assert_eq!(out, want, "{dims}");
                }
                if std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512vnni")
                {
                    // SAFETY: the processor has AVX-512 F, BW and VNNI
                    out.clear();
                    unsafe { dots_vnni(&qs, &codes, &sums, &mut out) };
                    assert_eq!(out, want, "{dims}");
                }
            }
        }
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
                    let approx = dots1(&qa, &qb)[0] as f64 * ia as f64 * ib as f64;
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
        // a block of queries at once over the first half, the rest since: the same answers
        let half = p.len() / 2;
        let block: Vec<&[f32]> = vs.iter().step_by(11).map(Vec::as_slice).collect();
        // every memory at `t` or above compared in full, most similar first
        let exact = |q: &[f32], t: f64| -> Vec<(u32, f64)> {
            let mut want: Vec<(u32, f64)> = vs
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    let s = cosine(q, v).unwrap().unwrap();
                    (s >= t).then_some((i as u32, s))
                })
                .collect();
            want.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            want
        };
        let first = p.near_many(&block, 0.9, 0);
        // each query's answer is what comparing it with every memory gives: itself among them
        for (k, q) in block.iter().enumerate() {
            let want = exact(q, 0.9);
            assert!(
                first[k].iter().any(|n| n.id as usize == 11 * k),
                "query {k}"
            );
            assert_eq!(
                first[k].iter().map(|n| n.id).collect::<Vec<_>>(),
                want.iter().map(|w| w.0).collect::<Vec<_>>(),
                "query {k}"
            );
            for (g, w) in first[k].iter().zip(&want) {
                assert_relative_eq!(g.similarity, w.1, epsilon = 1e-6);
            }
        }
        for (q, whole) in block.iter().zip(&first) {
            let mut parts = p.near_many(&[*q], 0.9, half).pop().unwrap();
            let mut head: Vec<Near<u32>> = whole
                .iter()
                .filter(|n| (n.id as usize) < half)
                .copied()
                .collect();
            head.append(&mut parts);
            best_first(&mut head);
            assert_eq!(&head, whole);
            assert_eq!(
                p.near_since(q, 0.9, half).len(),
                whole.iter().filter(|n| n.id as usize >= half).count()
            );
        }
        for t in [0.5, 0.9, 0.95, 0.97] {
            for q in vs.iter().step_by(7) {
                let want = exact(q, t);
                let got = p.near_since(q, t, 0);
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

    fn first(p: &mut Pool<u32>, q: &[f32], threshold: f64) -> Option<(u32, f64)> {
        p.near_since(q, threshold, 0)
            .first()
            .map(|n| (n.id, n.similarity))
    }

    #[test]
    fn the_nearest_within_the_threshold_with_its_exact_similarity() {
        let mut p = pool(&[
            (1, "a", vec![1.0, 0.0, 0.0]),
            (2, "b", vec![1.0, 0.2, 0.0]),
            (3, "c", vec![0.0, 0.0, 3.0]),
        ]);
        let q = [1.0f32, 0.25, 0.0];
        let near = p.near_since(&q, 0.9, 0);
        assert_eq!(near.iter().map(|n| n.id).collect::<Vec<_>>(), vec![2, 1]);
        assert!(near.iter().all(|n| n.created));
        assert_relative_eq!(
            near[0].similarity,
            cosine(&q, &[1.0, 0.2, 0.0]).unwrap().unwrap(),
            epsilon = 1e-12
        );
        // above every similarity: none
        assert_eq!(first(&mut p, &q, 0.9999), None);
        // the length does not matter, the direction does
        assert_eq!(first(&mut p, &[0.0, 0.0, 0.5], 0.99).map(|n| n.0), Some(3));
    }

    #[test]
    fn memories_stored_before_are_found_as_well_and_marked() {
        let mut p = pool(&[(1, "a", vec![1.0, 0.0, 0.0])]);
        p.know(5, &[2.0, 0.3, 0.0]);
        p.know(6, &[0.0, 1.0, 0.0]);
        let q = [1.0f32, 0.2, 0.0];
        let near = p.near_since(&q, 0.95, 0);
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
        let mut p = pool(&[
            (7, "a", vec![0.0, 2.0]),
            (4, "b", vec![0.0, 1.0]),
            (9, "z", vec![0.0, 0.0]),
        ]);
        assert_eq!(first(&mut p, &[0.0, 5.0], 0.95).map(|n| n.0), Some(4));
        assert_eq!(first(&mut p, &[0.0, 0.0], -1.0), None);
        assert_eq!(
            p.near_since(&[1.0, 0.0], -1.0, 0)
                .iter()
                .map(|n| n.id)
                .collect::<Vec<_>>(),
            vec![4, 7]
        );
    }

    #[test]
    fn the_threshold_is_exact_at_its_edge() {
        // cos = 0.6 exactly (3-4-5): found at 0.6, not above
        let mut p = pool(&[(1, "a", vec![3.0, 4.0])]);
        let q = [1.0f32, 0.0];
        assert!(first(&mut p, &q, 0.6).is_some());
        assert!(first(&mut p, &q, 0.600_001).is_none());
    }

    #[test]
    fn created_memories_come_back_in_order() {
        let p = pool(&[(3, "a", vec![1.0]), (1, "b", vec![2.0])]);
        let got: Vec<(u32, Vec<f32>)> = p.into_created().collect();
        assert_eq!(got, vec![(3, vec![1.0]), (1, vec![2.0])]);
    }
}
