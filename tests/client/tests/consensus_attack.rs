//! Consensus must not leak a tenant's data. The attacker is an application role (neither owner
//! nor BYPASSRLS) that holds tenant A and also a third tenant C (a role that may set
//! `fractality.user_id` holds any tenant it names); the victim, tenant B, holds a node with a
//! secret unit embedding u_b near the attacker's u_a (cosine 0.95), under a secret label and
//! secret metadata. Before 0.5.0 a consensus of A and B exposed its centroid c, and
//! u_b = 2 (c . u_a) c - u_a. The attacker tries: (a) min_contributors 2; (b) a consensus of A
//! and B alone; (c) a consensus of A, B and C, reading everything A and C can read about it and
//! solving for u_b: with one node each, with many probe nodes in C, and with C's one node moved
//! between repeated calls; (d) a guessed label (and metadata) on A's and C's nodes, to see
//! whether the consensus confirms that B used it; (e) calling crystallize_consensus without the
//! grant.
//!
//! What a consensus publishes since this suite first broke it: the number of users, the group
//! resonance to one decimal, no label and no metadata, and each tenant's own links with their
//! similarity to the seed to one decimal. The attacks solve for u_b from
//! those as they did from the exact centroid similarities that leaked before; a caller that
//! repeats calls with seeds and thresholds of its choosing still learns a bit at a time (the
//! user count), which is why crystallize_consensus is granted to trusted roles, not PUBLIC.
//!
//! The bound of (c): the attacker knows, before any consensus, that u_b is near u_a (within the
//! threshold), so u_a itself is a guess of cosine cos(u_a, u_b) = 0.95. What it can read after
//! the consensus must not give a reconstruction better than that guess by more than
//! [`MARGIN`] = 0.01. Any aggregate score over the members necessarily tells a little (the
//! group resonance alone gives u_b . (u_a + u_c)); with one node each that moves the best
//! estimate by about 1/sqrt(384) of the 0.31 of u_b off u_a, well under the margin. A
//! reconstruction above the bound is a leak.

mod common;
mod reliability;

use postgres::Client;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use uuid::Uuid;

const DIMS: usize = 384;
const ATTACKER: &str = "fractality_attacker";
const VICTIM: &str = "fractality_victim";
/// How much better than the guess u_a a reconstruction may be (see the file's comment).
const MARGIN: f64 = 0.01;
/// The victim's secrets: none of them may reach anything the attacker reads.
const SECRET_LABEL: &str = "Operation Nightingale";
const SECRET_VALUE: &str = "launch codes 4471";

/// The tests share the database's consensus layer: one at a time, each in its own region of
/// the vector space (base axis `region`, far from every other test's nodes).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

type Vector = Vec<f32>;

/// The unit vector of `v`, rounded to f32 as pgvector stores it.
fn unit(v: &[f64]) -> Vector {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter().map(|x| (x / n) as f32).collect()
}

fn axis(i: usize) -> Vec<f64> {
    let mut v = vec![0.0; DIMS];
    v[i] = 1.0;
    v
}

/// (e_base + h e_j), normalised: a probe near the base axis, cosine 1/sqrt(1 + h^2) to it.
fn probe(base: usize, j: usize, h: f64) -> Vector {
    let mut v = axis(base);
    v[j] += h;
    unit(&v)
}

/// A unit vector of cosine `cos` to e_base, off it in a random direction (seeded).
fn near(base: usize, cos: f64, seed: u64) -> Vector {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut w: Vec<f64> = (0..DIMS).map(|_| StandardNormal.sample(&mut rng)).collect();
    w[base] = 0.0;
    let n = w.iter().map(|x| x * x).sum::<f64>().sqrt();
    let sin = (1.0 - cos * cos).sqrt();
    let v: Vec<f64> = (0..DIMS)
        .map(|i| if i == base { cos } else { sin * w[i] / n })
        .collect();
    unit(&v)
}

fn text(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
    format!("[{}]", parts.join(","))
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Unit vector in f64 of a stored embedding (as the extension normalises it).
fn unit64(v: &[f32]) -> Vec<f64> {
    let v = to_f64(v);
    let n = dot(&v, &v).sqrt();
    v.iter().map(|x| x / n).collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    dot(a, b) / (dot(a, a) * dot(b, b)).sqrt()
}

/// Solves `g y = t` (Gaussian elimination, partial pivoting).
fn solve(mut g: Vec<Vec<f64>>, mut t: Vec<f64>) -> Vec<f64> {
    let n = t.len();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&a, &b| g[a][col].abs().total_cmp(&g[b][col].abs()))
            .unwrap();
        g.swap(col, pivot);
        t.swap(col, pivot);
        let (upper, lower) = g.split_at_mut(col + 1);
        let p = &upper[col];
        for (row, r) in lower.iter_mut().enumerate() {
            let f = r[col] / p[col];
            if f != 0.0 {
                for (x, y) in r[col..].iter_mut().zip(&p[col..]) {
                    *x -= f * y;
                }
                t[col + 1 + row] -= f * t[col];
            }
        }
    }
    let mut y = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| g[row][k] * y[k]).sum();
        y[row] = (t[row] - s) / g[row][row];
    }
    y
}

/// The attacker's best estimate of u from its inner products `t` with the known vectors `xs`:
/// the least-norm vector with those inner products (in the span of `xs`); with more vectors
/// than dimensions, the least-squares solution.
fn reconstruct(xs: &[Vec<f64>], t: &[f64]) -> Vec<f64> {
    if xs.len() > DIMS {
        // normal equations: (X^T X) u = X^T t
        let g: Vec<Vec<f64>> = (0..DIMS)
            .map(|i| {
                (0..DIMS)
                    .map(|j| xs.iter().map(|x| x[i] * x[j]).sum())
                    .collect()
            })
            .collect();
        let r: Vec<f64> = (0..DIMS)
            .map(|i| xs.iter().zip(t).map(|(x, ti)| x[i] * ti).sum())
            .collect();
        return solve(g, r);
    }
    let g: Vec<Vec<f64>> = xs
        .iter()
        .map(|a| xs.iter().map(|b| dot(a, b)).collect())
        .collect();
    let y = solve(g, t.to_vec());
    let mut u = vec![0.0; DIMS];
    for (x, w) in xs.iter().zip(&y) {
        for (ui, xi) in u.iter_mut().zip(x) {
            *ui += w * xi;
        }
    }
    u
}

/// The attacker's and the victim's sessions, and the database as its owner.
struct Actors {
    admin: Client,
    a: Client,
    b: Client,
    c: Client,
    ub: Uuid,
}

fn actors() -> Actors {
    let mut admin = common::db();
    // a consensus seeded by the attacker's own node carries the attacker's own label: the label
    // test's seeds are labelled with the guess, so its consensus nodes go before the next test
    // looks for the secret in what the attacker reads
    admin
        .batch_execute(
            "DELETE FROM fractality.consensus_nodes
              WHERE label ILIKE '%nightingale%' OR metadata::text ILIKE '%nightingale%'",
        )
        .unwrap();
    let (ua, ub, uc) = (common::tenant(), common::tenant(), common::tenant());
    let a = common::app(ATTACKER, Some(ua));
    let c = common::app(ATTACKER, Some(uc));
    let b = common::app(VICTIM, Some(ub));
    Actors { admin, a, b, c, ub }
}

fn node(c: &mut Client, key: &str, label: &str, meta: serde_json::Value, v: &[f32]) -> Uuid {
    c.query_one(
        "SELECT fractality.upsert_node($1, $2, $3, 0.8, $4::text::vector)",
        &[&key, &label, &meta, &text(v)],
    )
    .unwrap()
    .get(0)
}

/// The victim's node: the secret embedding, label and metadata.
fn victim(b: &mut Client, region: usize, label: &str, meta: serde_json::Value) -> (Uuid, Vector) {
    let ub = near(region, 0.95, 1000 + region as u64);
    let id = node(b, &format!("plan-{region}"), label, meta, &ub);
    (id, ub)
}

fn secret_meta() -> serde_json::Value {
    serde_json::json!({"secret": SECRET_VALUE, "plan": "nightingale"})
}

fn crystallize(c: &mut Client, source: Uuid, threshold: f64) -> Option<Uuid> {
    c.query_one(
        "SELECT fractality.crystallize_consensus($1, $2, 3)",
        &[&source, &threshold],
    )
    .unwrap()
    .get(0)
}

/// Similarity to the centroid of each of the session's linked nodes of consensus `id`.
fn links(c: &mut Client, id: Uuid) -> HashMap<Uuid, f64> {
    c.query(
        "SELECT node_id, similarity FROM fractality.consensus_links WHERE consensus_id = $1",
        &[&id],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// (group resonance, contributor count) of consensus `id`, as the session reads them.
fn scores(c: &mut Client, id: Uuid) -> (f64, i32) {
    let r = c
        .query_one(
            "SELECT resonance_score, contributor_count FROM fractality.consensus_nodes WHERE id = $1",
            &[&id],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

/// The attacker's inner products of u_b with each of its own vectors `xs` (unit, f64), from
/// what it reads: each link's similarity to the centroid (sim_x = x . S / |S|, S the sum of
/// the members' unit vectors) and the group resonance g (|S|^2 = m + g m (m - 1) over m
/// members: the attacker's and, it assumes, one of the victim's). x . u_b = sim_x |S| - x . K,
/// K the sum of the attacker's own vectors.
fn inner_products(xs: &[Vec<f64>], sims: &[f64], g: f64) -> Vec<f64> {
    let m = xs.len() as f64 + 1.0;
    let s = (m + g * m * (m - 1.0)).sqrt();
    let mut k = vec![0.0; DIMS];
    for x in xs {
        for (ki, xi) in k.iter_mut().zip(x) {
            *ki += xi;
        }
    }
    xs.iter()
        .zip(sims)
        .map(|(x, sim)| sim * s - dot(x, &k))
        .collect()
}

/// Everything the session reads about the consensus layer and its own graph, as text.
fn visible(c: &mut Client, around: &[f32]) -> String {
    let mut out = String::new();
    for sql in [
        "SELECT to_jsonb(x)::text FROM fractality.consensus_nodes x".to_string(),
        "SELECT to_jsonb(x)::text FROM fractality.consensus_links x".into(),
        "SELECT to_jsonb(x)::text FROM fractality.consensus_centroids x".into(),
        "SELECT to_jsonb(x)::text FROM fractality.consensus_tree(-1, 5) x".into(),
        "SELECT to_jsonb(x)::text FROM fractality.nodes x".into(),
        "SELECT to_jsonb(x)::text FROM fractality.node_energy x".into(),
        "SELECT to_jsonb(x)::text FROM fractality.search_nodes('Nightingale or launch or codes') x"
            .into(),
        format!(
            "SELECT to_jsonb(x)::text FROM fractality.recall('{}'::vector, 50, 'Nightingale launch codes') x",
            text(around)
        ),
    ] {
        match c.query(&sql, &[]) {
            Ok(rows) => {
                for r in rows {
                    out.push_str(r.get::<_, &str>(0));
                    out.push('\n');
                }
            }
            Err(e) => {
                let state = common::sqlstate(&e);
                assert_eq!(state, "42501", "{sql}: {e}");
            }
        }
    }
    out
}

/// Asserts none of B's secrets (label, metadata value, node id, tenant) is in `seen`.
fn assert_no_secret(seen: &str, b_node: Uuid, ub: Uuid, who: &str) {
    let lower = seen.to_lowercase();
    for secret in [
        SECRET_LABEL.to_lowercase(),
        "nightingale".into(),
        SECRET_VALUE.to_lowercase(),
        b_node.to_string(),
        ub.to_string(),
    ] {
        assert!(
            !lower.contains(&secret),
            "{who} read the victim's secret {secret:?}"
        );
    }
}

#[test]
fn the_attacker_is_an_application_role() {
    let _s = serial();
    let mut x = actors();
    let (superuser, bypass, owner): (bool, bool, bool) = {
        let r = x
            .admin
            .query_one(
                "SELECT r.rolsuper, r.rolbypassrls,
                        pg_has_role(r.rolname, c.relowner, 'USAGE')
                   FROM pg_roles r, pg_class c
                  WHERE r.rolname = $1 AND c.oid = 'fractality.consensus_nodes'::regclass",
                &[&ATTACKER],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert!(!superuser && !bypass && !owner);
    // the centroids are the owner's alone
    let n: i64 =
        x.a.query_one("SELECT count(*) FROM fractality.consensus_centroids", &[])
            .unwrap()
            .get(0);
    assert_eq!(n, 0);
    // and consensus_nodes has no vector column left
    let vectors: i64 = x
        .a
        .query_one(
            "SELECT count(*) FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
              WHERE a.attrelid = 'fractality.consensus_nodes'::regclass AND a.attnum > 0
                AND NOT a.attisdropped AND t.typname IN ('vector', 'halfvec', 'sparsevec', '_float4', '_float8')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(vectors, 0, "consensus_nodes exposes a vector");
}

#[test]
fn a_min_contributors_below_three_is_refused() {
    let _s = serial();
    let mut x = actors();
    let region = 10;
    let a_node = node(
        &mut x.a,
        "idea-10",
        "Attacker idea",
        serde_json::json!({}),
        &unit(&axis(region)),
    );
    victim(&mut x.b, region, SECRET_LABEL, secret_meta());
    for n in [2, 1, 0, -1] {
        let e =
            x.a.execute(
                "SELECT fractality.crystallize_consensus($1, 0.8, $2)",
                &[&a_node, &n],
            )
            .unwrap_err();
        assert_eq!(common::sqlstate(&e), "22023", "min_contributors {n}: {e}");
        // nor through the internal function, which the attacker (granted it, as a curator is)
        // can call with its own vector: the check, not the privilege, refuses it
        let e = x
            .a
            .execute(
                "SELECT fractality._crystallize_consensus($1, $2::text::vector, 0.8, $3, 'default')",
                &[&a_node, &text(&unit(&axis(region))), &n],
            )
            .unwrap_err();
        assert_eq!(
            common::sqlstate(&e),
            "22023",
            "_crystallize_consensus with min_contributors {n}: {e}"
        );
    }
}

#[test]
fn b_two_users_make_no_consensus() {
    let _s = serial();
    let mut x = actors();
    let region = 11;
    let count = |admin: &mut Client| -> (i64, i64) {
        let r = admin
            .query_one(
                "SELECT (SELECT count(*) FROM fractality.consensus_nodes),
                        (SELECT count(*) FROM fractality.consensus_links)",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let before = count(&mut x.admin);
    let a_node = node(
        &mut x.a,
        "idea-11",
        "Attacker idea",
        serde_json::json!({}),
        &unit(&axis(region)),
    );
    // a second node of A changes nothing: two users, however many nodes
    node(
        &mut x.a,
        "idea-11b",
        "Attacker idea",
        serde_json::json!({}),
        &probe(region, region + 1, 0.3),
    );
    victim(&mut x.b, region, SECRET_LABEL, secret_meta());
    // (no lower threshold: the other tests' nodes lie at cosine 0.45 or less to this region)
    for threshold in [0.9, 0.8, 0.6] {
        assert_eq!(
            crystallize(&mut x.a, a_node, threshold),
            None,
            "a consensus of two users at threshold {threshold}"
        );
    }
    assert_eq!(count(&mut x.admin), before, "nothing written");
}

#[test]
fn c_one_node_each_tells_nothing_beyond_the_prior() {
    let _s = serial();
    let mut x = actors();
    let region = 20;
    let va = unit(&axis(region));
    let vc = probe(region, region + 7, 0.3);
    let a_node = node(
        &mut x.a,
        "idea-20",
        "Attacker idea",
        serde_json::json!({"theme": "garden"}),
        &va,
    );
    let c_node = node(
        &mut x.c,
        "probe-20",
        "Attacker probe",
        serde_json::json!({"theme": "garden"}),
        &vc,
    );
    let (b_node, vb) = victim(&mut x.b, region, SECRET_LABEL, secret_meta());
    let id = crystallize(&mut x.a, a_node, 0.8).expect("three users");
    let (g, users) = scores(&mut x.a, id);
    assert_eq!(users, 3);
    let sa = links(&mut x.a, id);
    let sc = links(&mut x.c, id);
    assert_eq!(
        sa.keys().collect::<Vec<_>>(),
        vec![&a_node],
        "A sees its own link only"
    );
    assert_eq!(
        sc.keys().collect::<Vec<_>>(),
        vec![&c_node],
        "C sees its own link only"
    );
    let xs = vec![unit64(&va), unit64(&vc)];
    let t = inner_products(&xs, &[sa[&a_node], sc[&c_node]], g);
    let estimate = reconstruct(&xs, &t);
    let secret = unit64(&vb);
    let prior = cosine(&xs[0], &secret);
    let got = cosine(&estimate, &secret);
    reliability::report(&format!(
        "consensus_attack: one node each in A and C: guess u_a {prior:.4}, reconstruction {got:.4}"
    ));
    assert!(
        got <= prior + MARGIN,
        "the attacker reconstructs u_b to cosine {got:.6} from one node in A and one in C (the guess u_a gives {prior:.6})"
    );
    for (who, session) in [("A", &mut x.a), ("C", &mut x.c)] {
        let seen = visible(session, &vb);
        assert!(seen.contains(&id.to_string()), "{who} sees the consensus");
        assert_no_secret(&seen, b_node, x.ub, who);
    }
}

#[test]
fn c_many_probe_nodes_do_not_reconstruct_the_victims_embedding() {
    let _s = serial();
    let mut x = actors();
    let region = 30;
    let va = unit(&axis(region));
    let a_node = node(
        &mut x.a,
        "idea-30",
        "Attacker idea",
        serde_json::json!({}),
        &va,
    );
    let (b_node, vb) = victim(&mut x.b, region, SECRET_LABEL, secret_meta());
    // C: 450 probes in random directions off u_a, at cosines 0.86 to 0.94 to it (inside the
    // threshold 0.85, as the victim's 0.95 is): more than the 384 dimensions
    let mut rng = rand::rngs::StdRng::seed_from_u64(30);
    let mut probes = HashMap::new();
    x.c.batch_execute("BEGIN").unwrap();
    for j in 0..450 {
        let cos = 0.86 + 0.08 * (j as f64 / 450.0);
        let v = near(region, cos, rng.random());
        let id = node(
            &mut x.c,
            &format!("probe-30-{j}"),
            "Attacker probe",
            serde_json::json!({}),
            &v,
        );
        probes.insert(id, v);
    }
    x.c.batch_execute("COMMIT").unwrap();
    let id = crystallize(&mut x.a, a_node, 0.85).expect("three users");
    let (g, users) = scores(&mut x.a, id);
    assert_eq!(users, 3);
    // the attacker sees which of its nodes are members, and the similarity of each
    let sa = links(&mut x.a, id);
    let sc = links(&mut x.c, id);
    // the attack's premise: every probe is a member, so C holds more equations than dimensions
    assert_eq!(sc.len(), 450, "C's probes linked to the consensus");
    let mut xs = vec![unit64(&va)];
    let mut sims = vec![sa[&a_node]];
    for (pid, sim) in &sc {
        xs.push(unit64(&probes[pid]));
        sims.push(*sim);
    }
    let t = inner_products(&xs, &sims, g);
    let estimate = reconstruct(&xs, &t);
    let secret = unit64(&vb);
    let prior = cosine(&xs[0], &secret);
    let got = cosine(&estimate, &secret);
    reliability::report(&format!(
        "consensus_attack: {} of 450 probes of C linked: guess u_a {prior:.4}, reconstruction {got:.6} (1 - cos {:.1e}, |estimate| {:.4})",
        sc.len(),
        1.0 - got,
        dot(&estimate, &estimate).sqrt()
    ));
    for (who, session) in [("A", &mut x.a), ("C", &mut x.c)] {
        let seen = visible(session, &vb);
        assert!(seen.contains(&id.to_string()), "{who} sees the consensus");
        assert_no_secret(&seen, b_node, x.ub, who);
    }
    assert!(
        got <= prior + MARGIN,
        "the attacker reconstructs u_b to cosine {got:.6} (the guess u_a gives {prior:.6}) from the \
         similarities of its {} linked nodes (consensus_links.similarity, each tenant its own) and \
         the group resonance (consensus_nodes.resonance_score) of one crystallize_consensus call",
        xs.len()
    );
}

#[test]
fn c_moving_one_node_between_calls_does_not_reconstruct_the_victims_embedding() {
    let _s = serial();
    let mut x = actors();
    let region = 40;
    let h = 0.5;
    let va = unit(&axis(region));
    let a_node = node(
        &mut x.a,
        "idea-40",
        "Attacker idea",
        serde_json::json!({}),
        &va,
    );
    let (b_node, vb) = victim(&mut x.b, region, SECRET_LABEL, secret_meta());
    // C holds one node; between calls the attacker moves it along the next axis
    let mut xs = vec![unit64(&va)];
    let mut t = Vec::new();
    let mut consensus = None;
    for j in (0..DIMS).filter(|&j| j != region) {
        let v = probe(region, j, h);
        let c_node = node(
            &mut x.c,
            "probe-40",
            "Attacker probe",
            serde_json::json!({}),
            &v,
        );
        let id = crystallize(&mut x.a, a_node, 0.85).expect("three users");
        assert!(
            consensus.is_none_or(|c| c == id),
            "the same consensus, updated"
        );
        consensus = Some(id);
        let (g, users) = scores(&mut x.a, id);
        assert_eq!(users, 3);
        let round = [unit64(&va), unit64(&v)];
        let sims = [links(&mut x.a, id)[&a_node], links(&mut x.c, id)[&c_node]];
        let ip = inner_products(&round, &sims, g);
        if t.is_empty() {
            t.push(ip[0]);
        }
        xs.push(round[1].clone());
        t.push(ip[1]);
    }
    let estimate = reconstruct(&xs, &t);
    let secret = unit64(&vb);
    let prior = cosine(&xs[0], &secret);
    let got = cosine(&estimate, &secret);
    reliability::report(&format!(
        "consensus_attack: one node of C moved over 383 calls: guess u_a {prior:.4}, reconstruction {got:.6} (1 - cos {:.1e})",
        1.0 - got
    ));
    let id = consensus.expect("at least one call");
    for (who, session) in [("A", &mut x.a), ("C", &mut x.c)] {
        let seen = visible(session, &vb);
        assert!(seen.contains(&id.to_string()), "{who} sees the consensus");
        assert_no_secret(&seen, b_node, x.ub, who);
    }
    assert!(
        got <= prior + MARGIN,
        "the attacker reconstructs u_b to cosine {got:.6} (the guess u_a gives {prior:.6}) from 383 \
         calls with one node in A and one in C, C's moved between calls (its link's similarity and \
         the group resonance of each call)"
    );
}

/// What A reads about the consensus A, B and C form in `region`: (label, metadata, users).
fn outcome(
    x: &mut Actors,
    region: usize,
    labels: [&str; 3],
    metas: [serde_json::Value; 3],
) -> (Option<String>, serde_json::Value, i32) {
    let [la, lb, lc] = labels;
    let [ma, mb, mc] = metas;
    let a_node = node(
        &mut x.a,
        &format!("idea-{region}"),
        la,
        ma,
        &unit(&axis(region)),
    );
    node(
        &mut x.c,
        &format!("probe-{region}"),
        lc,
        mc,
        &probe(region, region + 3, 0.3),
    );
    let (b_node, vb) = victim(&mut x.b, region, lb, mb);
    let id = crystallize(&mut x.a, a_node, 0.8).expect("three users");
    let r = x
        .a
        .query_one(
            "SELECT label, metadata, contributor_count FROM fractality.consensus_nodes WHERE id = $1",
            &[&id],
        )
        .unwrap();
    let tree_label: Option<String> =
        x.a.query_one(
            "SELECT label FROM fractality.consensus_tree(-1, 0) WHERE consensus_id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    let label: Option<String> = r.get(0);
    assert_eq!(tree_label, label, "consensus_tree shows the same label");
    // B's node id and tenant never reach A
    let seen = visible(&mut x.a, &vb);
    assert!(seen.contains(&id.to_string()), "A sees the consensus");
    for secret in [b_node.to_string(), x.ub.to_string()] {
        assert!(!seen.contains(&secret), "A read {secret}");
    }
    (label, r.get(1), r.get(2))
}

#[test]
fn d_the_label_rule_confirms_no_guess() {
    let _s = serial();
    let mut x = actors();
    let guess = serde_json::json!({"plan": "nightingale"});
    let other = serde_json::json!({"plan": "garden"});
    let mut leaks = Vec::new();
    // the whole label and a metadata value guessed: A and C carry the guess
    let hit = outcome(
        &mut x,
        50,
        [SECRET_LABEL, SECRET_LABEL, SECRET_LABEL],
        [guess.clone(), guess.clone(), guess.clone()],
    );
    let miss = outcome(
        &mut x,
        60,
        [SECRET_LABEL, "Garden party", SECRET_LABEL],
        [guess.clone(), other.clone(), guess.clone()],
    );
    assert_eq!(hit.2, 3);
    assert_eq!(miss.2, 3);
    if hit.0 != miss.0 {
        leaks.push(format!(
            "label: B's label is the guess -> {:?}, it is not -> {:?}",
            hit.0, miss.0
        ));
    }
    if hit.1 != miss.1 {
        leaks.push(format!(
            "metadata: B's value is the guess -> {}, it is not -> {}",
            hit.1, miss.1
        ));
    }
    // the first word guessed (the common words of all labels): A and C start with it
    let word_hit = outcome(
        &mut x,
        70,
        ["Operation alpha", SECRET_LABEL, "Operation beta"],
        [
            serde_json::json!({}),
            serde_json::json!({}),
            serde_json::json!({}),
        ],
    );
    let word_miss = outcome(
        &mut x,
        80,
        ["Operation alpha", "Garden party", "Operation beta"],
        [
            serde_json::json!({}),
            serde_json::json!({}),
            serde_json::json!({}),
        ],
    );
    if word_hit.0 != word_miss.0 {
        leaks.push(format!(
            "first word: B's label starts with the guess -> {:?}, it does not -> {:?}",
            word_hit.0, word_miss.0
        ));
    }
    assert!(
        leaks.is_empty(),
        "what A reads about the consensus of A, B and C tells whether B used a label or value A \
         and C guessed (both held by the attacker):\n{}",
        leaks.join("\n")
    );
}

#[test]
fn e_crystallize_is_granted_not_public() {
    // a consensus tells its caller, a bit at a time, whether other tenants hold ideas near seeds
    // of its choosing: a role not granted crystallize_consensus gets PostgreSQL's 42501
    let _s = serial();
    let mut admin = common::db();
    admin
        .batch_execute(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fractality_ungranted') THEN
                     CREATE ROLE fractality_ungranted LOGIN;
                 END IF;
             END $$;
             GRANT USAGE ON SCHEMA fractality TO fractality_ungranted;
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA fractality TO fractality_ungranted;",
        )
        .unwrap();
    let mut c = common::connect_as("fractality_ungranted");
    common::set_tenant(&mut c, common::tenant());
    let id = node(
        &mut c,
        "ungranted",
        "An idea",
        serde_json::json!({}),
        &unit(&axis(90)),
    );
    let e = c
        .query_one(
            "SELECT fractality.crystallize_consensus($1, 0.8, 3)",
            &[&id],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "42501", "{e}");
    let e = c
        .query_one(
            "SELECT fractality._crystallize_consensus($1, $2::text::vector, 0.8, 3, 'default')",
            &[&id, &text(&unit(&axis(90)))],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "42501", "{e}");
}

/// A consensus that another session deletes while a crystallisation of its group waits for its
/// row is a serialization failure (40001: run it again), not an internal error (it was XX000, "no
/// id returned"); run again, the group makes a consensus of its own.
#[test]
fn a_consensus_deleted_while_its_group_crystallises_is_a_serialization_failure() {
    let _g = serial();
    let mut x = actors();
    // a region of its own (the other tests use 10 to 87)
    let region = 200;
    let seed = node(
        &mut x.a,
        "gone-a",
        "a",
        serde_json::json!({}),
        &near(region, 0.99, 5001),
    );
    node(
        &mut x.b,
        "gone-b",
        "b",
        serde_json::json!({}),
        &near(region, 0.99, 5002),
    );
    node(
        &mut x.c,
        "gone-c",
        "c",
        serde_json::json!({}),
        &near(region, 0.99, 5003),
    );
    let first = crystallize(&mut x.admin, seed, 0.8).expect("a consensus of three users");
    let mut deleter = common::db();
    deleter
        .batch_execute(&format!(
            "BEGIN; DELETE FROM fractality.consensus_nodes WHERE id = '{first}'"
        ))
        .unwrap();
    let call = std::thread::spawn(move || {
        common::db()
            .query_one(
                "SELECT fractality.crystallize_consensus($1, 0.8, 3)",
                &[&seed],
            )
            .map(|r| r.get::<_, Option<Uuid>>(0))
    });
    common::wait_for_a_lock(&mut x.admin, "SELECT fractality.crystallize_consensus%");
    deleter.batch_execute("COMMIT").unwrap();
    let err = call.join().unwrap().unwrap_err();
    assert_eq!(common::sqlstate(&err), "40001", "{err}");
    let second = crystallize(&mut x.admin, seed, 0.8).expect("the group's own consensus");
    assert_ne!(second, first);
}
