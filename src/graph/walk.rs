//! The graph algorithms, plain Rust over a `fetch` callback and tested without a server:
//! [`breadth_first`] (what `traverse` walks) and [`cheapest_path`] (Dijkstra, what
//! `consciousness_path` finds, an edge costing [`edge_cost`]). `fetch` is given the nodes whose
//! edges are wanted and answers them in any order; `super::store` answers it with one query per
//! level (or per batch of the frontier), or from the edges of several levels read at once
//! ([`Ahead`]).

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::hash::Hash;

// ---- breadth-first traversal -----------------------------------------------------------------

/// Edges known ahead of a walk: read for several levels at once from a small frontier, they
/// answer the next levels' `fetch` without a query as long as every node of the frontier is
/// covered (its outgoing edges are all among them).
pub struct Ahead<N> {
    out: HashMap<N, Vec<(N, f64)>>,
    covered: HashSet<N>,
}

impl<N: Copy + Eq + Hash> Ahead<N> {
    /// From every edge within `steps` steps of `frontier`, each with the step it is reached at
    /// (1 for the frontier's own; an edge may come at several steps): the frontier and every node
    /// reached before the last step are covered.
    pub fn new(frontier: &[N], edges: &[(N, N, f64, i32)], steps: i32) -> Self {
        let mut covered: HashSet<N> = frontier.iter().copied().collect();
        let mut seen: HashSet<(N, N)> = HashSet::new();
        let mut out: HashMap<N, Vec<(N, f64)>> = HashMap::new();
        for &(from, to, w, step) in edges {
            if step < steps {
                covered.insert(to);
            }
            if seen.insert((from, to)) {
                out.entry(from).or_default().push((to, w));
            }
        }
        Ahead { out, covered }
    }

    /// The edges leaving `frontier`, when every one of its nodes is covered.
    pub fn edges(&self, frontier: &[N]) -> Option<Vec<(N, N, f64)>> {
        if !frontier.iter().all(|n| self.covered.contains(n)) {
            return None;
        }
        Some(
            frontier
                .iter()
                .flat_map(|f| {
                    self.out
                        .get(f)
                        .into_iter()
                        .flatten()
                        .map(move |&(to, w)| (*f, to, w))
                })
                .collect(),
        )
    }
}

/// One node reached by [`breadth_first`]: its depth and the product of the edge weights along
/// its strongest path ([`path_of`]; [`Visit::parent`], the node before on it).
#[derive(Clone, Debug, PartialEq)]
pub struct Visit<N> {
    pub node: N,
    pub depth: usize,
    pub weight: f64,
    /// How the strongest path arrives: the node before and which of its two paths it extends.
    strongest: Option<Link>,
    /// The weakest path (the lowest product) at the same depth: a negative edge after it makes
    /// the strongest path of the next node.
    weakest: Option<Link>,
    low: f64,
}

/// A step back along a path: the visit before, and whether its weakest path is the one taken.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Link {
    at: usize,
    weakest: bool,
}

impl<N> Visit<N> {
    /// The index of the visit before this one on its strongest path (None for the root).
    pub fn parent(&self) -> Option<usize> {
        self.strongest.map(|l| l.at)
    }
}

/// Breadth first from `root` to `max_depth`: every reachable node once, at its smallest depth
/// (so cycles are cut), with its strongest path there: the one whose product of edge weights is
/// the highest (ties: the smaller id of the node before). Weights lie in [-1, 1], so a node's
/// weakest path (the lowest product, most negative) is kept as well: through an edge of negative
/// weight it is the next node's strongest. `fetch(frontier)` returns the edges (from, to,
/// weight) leaving the frontier, in any order. The result is ordered by depth, then accumulated
/// weight (highest first), then id.
pub fn breadth_first<N, F>(root: N, max_depth: usize, mut fetch: F) -> Vec<Visit<N>>
where
    N: Copy + Eq + Hash + Ord,
    F: FnMut(&[N]) -> Vec<(N, N, f64)>,
{
    let mut visits = vec![Visit {
        node: root,
        depth: 0,
        weight: 1.0,
        strongest: None,
        weakest: None,
        low: 1.0,
    }];
    let mut index: HashMap<N, usize> = HashMap::from([(root, 0)]);
    let mut frontier: Vec<usize> = vec![0];
    for depth in 1..=max_depth {
        if frontier.is_empty() {
            break;
        }
        let ids: Vec<N> = frontier.iter().map(|&i| visits[i].node).collect();
        let mut next: Vec<usize> = Vec::new();
        for (from, to, w) in fetch(&ids) {
            let Some(&fi) = index.get(&from) else {
                continue;
            };
            if visits[fi].depth + 1 != depth {
                continue;
            }
            // the products through this edge from the node's strongest and weakest paths, the
            // higher first (+ 0.0: a product of 0 is 0, not -0)
            let through = |weakest: bool| {
                let p = if weakest {
                    visits[fi].low
                } else {
                    visits[fi].weight
                };
                (p * w + 0.0, Link { at: fi, weakest })
            };
            let (strong, weak) = (through(false), through(true));
            let (high, low) = if weak.0 > strong.0 {
                (weak, strong)
            } else {
                (strong, weak)
            };
            match index.get(&to) {
                None => {
                    index.insert(to, visits.len());
                    next.push(visits.len());
                    visits.push(Visit {
                        node: to,
                        depth,
                        weight: high.0,
                        strongest: Some(high.1),
                        weakest: Some(low.1),
                        low: low.0,
                    });
                }
                Some(&ti) if visits[ti].depth == depth => {
                    let before = |link: Option<Link>| visits[link.expect("not the root").at].node;
                    let cur = &visits[ti];
                    let stronger = high.0 > cur.weight
                        || (high.0 == cur.weight && from < before(cur.strongest));
                    let weaker =
                        low.0 < cur.low || (low.0 == cur.low && from < before(cur.weakest));
                    if stronger {
                        visits[ti].weight = high.0;
                        visits[ti].strongest = Some(high.1);
                    }
                    if weaker {
                        visits[ti].low = low.0;
                        visits[ti].weakest = Some(low.1);
                    }
                }
                Some(_) => {} // reached earlier: a cycle or a longer way round
            }
        }
        frontier = next;
    }
    let mut order: Vec<usize> = (0..visits.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&visits[a], &visits[b]);
        x.depth
            .cmp(&y.depth)
            .then(y.weight.total_cmp(&x.weight))
            .then(x.node.cmp(&y.node))
    });
    // re-index the links into the new order
    let mut position = vec![0usize; visits.len()];
    for (new, &old) in order.iter().enumerate() {
        position[old] = new;
    }
    let moved = |l: Option<Link>| {
        l.map(|l| Link {
            at: position[l.at],
            weakest: l.weakest,
        })
    };
    order
        .iter()
        .map(|&old| {
            let v = &visits[old];
            Visit {
                node: v.node,
                depth: v.depth,
                weight: v.weight,
                strongest: moved(v.strongest),
                weakest: moved(v.weakest),
                low: v.low,
            }
        })
        .collect()
}

/// The strongest path from the root to `visits[i]`, root first.
pub fn path_of<N: Copy>(visits: &[Visit<N>], i: usize) -> Vec<N> {
    let mut path = Vec::with_capacity(visits[i].depth + 1);
    path.push(visits[i].node);
    let mut link = visits[i].strongest;
    while let Some(l) = link {
        path.push(visits[l.at].node);
        link = if l.weakest {
            visits[l.at].weakest
        } else {
            visits[l.at].strongest
        };
    }
    path.reverse();
    path
}

// ---- cheapest path ---------------------------------------------------------------------------

/// The cost of an edge between nodes of energy `a` and `b`: 1 / (a * b); `None` (impassable) when
/// either has no energy.
pub fn edge_cost(a: f64, b: f64) -> Option<f64> {
    let p = a * b;
    let c = 1.0 / p;
    // energies so small that their product's inverse overflows are no edge, as a product of 0
    (p > 0.0 && p.is_finite() && c.is_finite()).then_some(c)
}

#[derive(PartialEq)]
struct Entry<N>(f64, N);
impl<N: Ord> Eq for Entry<N> {}
impl<N: Ord> PartialOrd for Entry<N> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<N: Ord> Ord for Entry<N> {
    /// Reversed: BinaryHeap pops the cheapest (then the smallest id) first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(other.1.cmp(&self.1))
    }
}

/// Dijkstra from `from` (energy `from_atp`) to `to` over directed edges of cost
/// [`edge_cost`]; paths costing more than `max_cost` are not followed. `fetch(nodes)` returns the
/// edges (from, to, energy of to) leaving those nodes; it is called with up to `batch` nodes at
/// a time: the node being settled and the cheapest other unexpanded nodes of the frontier, so
/// that a path costs a few queries, not one per node. Returns the path with the cumulative cost
/// at each step, or `None` when `to` cannot be reached.
pub fn cheapest_path<N, F>(
    from: N,
    from_atp: f64,
    to: N,
    max_cost: Option<f64>,
    batch: usize,
    mut fetch: F,
) -> Option<Vec<(N, f64)>>
where
    N: Copy + Eq + Hash + Ord,
    F: FnMut(&[N]) -> Vec<(N, N, f64)>,
{
    // node -> (cost so far, previous node, energy)
    let mut best: HashMap<N, (f64, Option<N>, f64)> =
        HashMap::from([(from, (0.0, None, from_atp))]);
    let mut settled: HashSet<N> = HashSet::new();
    let mut adjacency: HashMap<N, Vec<(N, f64)>> = HashMap::new();
    let mut heap = BinaryHeap::from([Entry(0.0, from)]);
    // the nodes reached and not yet expanded, cheapest first: the batch of a fetch is taken from
    // its start (scanning every node reached for it made a search quadratic in the graph)
    let mut unexpanded: BTreeSet<Entry<N>> = BTreeSet::from([Entry(0.0, from)]);
    while let Some(Entry(cost, u)) = heap.pop() {
        if settled.contains(&u) || cost > best[&u].0 {
            continue;
        }
        if u == to {
            let mut path = vec![(u, cost)];
            let mut at = best[&u].1;
            while let Some(p) = at {
                path.push((p, best[&p].0));
                at = best[&p].1;
            }
            path.reverse();
            return Some(path);
        }
        if !adjacency.contains_key(&u) {
            let mut ids: Vec<N> = vec![u];
            ids.extend(
                unexpanded
                    .iter()
                    .rev() // Entry's order is reversed for the heap: the cheapest last
                    .map(|e| e.1)
                    .filter(|n| *n != u && !settled.contains(n))
                    .take(batch.saturating_sub(1)),
            );
            for n in &ids {
                unexpanded.remove(&Entry(best[n].0, *n));
                adjacency.insert(*n, Vec::new());
            }
            for (a, b, atp_b) in fetch(&ids) {
                if let Some(list) = adjacency.get_mut(&a) {
                    list.push((b, atp_b));
                }
            }
        }
        settled.insert(u);
        unexpanded.remove(&Entry(cost, u));
        let atp_u = best[&u].2;
        for &(v, atp_v) in &adjacency[&u] {
            if settled.contains(&v) {
                continue;
            }
            let Some(c) = edge_cost(atp_u, atp_v) else {
                continue;
            };
            let next = cost + c;
            if !next.is_finite() || max_cost.is_some_and(|m| next > m) {
                continue;
            }
            let previous = best.get(&v).map(|b| b.0);
            if previous.is_none_or(|p| next < p) {
                if !adjacency.contains_key(&v) {
                    if let Some(p) = previous {
                        unexpanded.remove(&Entry(p, v));
                    }
                    unexpanded.insert(Entry(next, v));
                }
                best.insert(v, (next, Some(u), atp_v));
                heap.push(Entry(next, v));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use std::cell::RefCell;

    #[test]
    fn edges_known_ahead_answer_the_walk_as_queries_per_level_do() {
        // a chain 1 -> 2 -> 3 -> 4 with a cycle 3 -> 1 and a side branch 2 -> 5
        let all = [
            (1, 2, 0.5),
            (2, 3, 0.5),
            (3, 4, 0.5),
            (3, 1, 0.9),
            (2, 5, 0.25),
        ];
        let per_level = |f: &[i32]| -> Vec<(i32, i32, f64)> {
            all.iter().copied().filter(|e| f.contains(&e.0)).collect()
        };
        // what graph_edges_ahead.sql returns for frontier [1], 3 steps: each edge at each step
        // it is reached at (UNION keeps one row per edge and step)
        let rows = [
            (1, 2, 0.5, 1),
            (2, 3, 0.5, 2),
            (2, 5, 0.25, 2),
            (3, 4, 0.5, 3),
            (3, 1, 0.9, 3),
        ];
        let ahead = Ahead::new(&[1], &rows, 3);
        // nodes reached at the last step (4, and 1 again) have unknown edges: 4 is not covered
        assert!(ahead.edges(&[4]).is_none());
        assert!(ahead.edges(&[3, 5]).is_some());
        let mut queries = 0;
        let walked = breadth_first(1, 3, |f| match ahead.edges(f) {
            Some(e) => e,
            None => {
                queries += 1;
                per_level(f)
            }
        });
        assert_eq!(queries, 0);
        assert_eq!(walked, breadth_first(1, 3, per_level));
        // a fourth level needs node 4's edges: asked for
        let mut asked = Vec::new();
        breadth_first(1, 4, |f| {
            ahead.edges(f).unwrap_or_else(|| {
                asked.push(f.to_vec());
                per_level(f)
            })
        });
        assert_eq!(asked, vec![vec![4]]);
    }

    fn graph(edges: &[(u32, u32, f64)]) -> impl FnMut(&[u32]) -> Vec<(u32, u32, f64)> + '_ {
        move |frontier: &[u32]| {
            edges
                .iter()
                .filter(|e| frontier.contains(&e.0))
                .copied()
                .collect()
        }
    }

    #[test]
    fn bfs_visits_each_node_once_at_its_smallest_depth() {
        // 1 -> 2 -> 3 -> 1 (cycle), 1 -> 3 directly, 3 -> 4
        let edges = [
            (1, 2, 0.5),
            (2, 3, 1.0),
            (3, 1, 1.0),
            (1, 3, 0.25),
            (3, 4, 0.5),
        ];
        let v = breadth_first(1u32, 5, graph(&edges));
        let got: Vec<(u32, usize)> = v.iter().map(|x| (x.node, x.depth)).collect();
        assert_eq!(got, vec![(1, 0), (2, 1), (3, 1), (4, 2)]);
        assert_relative_eq!(v[2].weight, 0.25);
        assert_eq!(path_of(&v, 3), vec![1, 3, 4]);
        assert_relative_eq!(v[3].weight, 0.125);
    }

    #[test]
    fn bfs_prefers_the_strongest_shortest_path_and_stops_at_the_depth() {
        // two ways to 4 at depth 2: via 2 (0.9 * 0.9) and via 3 (0.5 * 1.0)
        let edges = [
            (1, 3, 0.5),
            (1, 2, 0.9),
            (3, 4, 1.0),
            (2, 4, 0.9),
            (4, 5, 1.0),
        ];
        let v = breadth_first(1u32, 2, graph(&edges));
        let four = v.iter().position(|x| x.node == 4).unwrap();
        assert_eq!(path_of(&v, four), vec![1, 2, 4]);
        assert_relative_eq!(v[four].weight, 0.81, epsilon = 1e-12);
        assert!(
            v.iter().all(|x| x.node != 5),
            "depth 3 is beyond max_depth 2"
        );
        assert_eq!(breadth_first(1u32, 0, graph(&edges)).len(), 1);
        // within a depth: strongest first
        assert_eq!(v[1].node, 2);
    }

    #[test]
    fn bfs_same_result_whatever_order_edges_come_in() {
        let edges = [(1, 2, 0.5), (1, 3, 0.5), (2, 4, 0.5), (3, 4, 0.5)];
        let mut reversed = edges;
        reversed.reverse();
        let a = breadth_first(1u32, 3, graph(&edges));
        let b = breadth_first(1u32, 3, graph(&reversed));
        assert_eq!(a, b);
        let four = a.iter().position(|x| x.node == 4).unwrap();
        assert_eq!(
            path_of(&a, four),
            vec![1, 2, 4],
            "ties go to the smaller parent"
        );
    }

    #[test]
    fn bfs_takes_the_strongest_path_through_negative_weights() {
        // to 4 at depth 2: via 2 (0.9 * 0.2 = 0.18) or via 3 (0.5 * -0.9 = -0.45); to 5 at depth
        // 3 through 4's edge of -1: 4's weakest path gives the strongest, 0.45 (found by a review:
        // the walk kept only each node's strongest path and gave 5 -0.18 through 2)
        let edges = [
            (1, 2, 0.9),
            (1, 3, 0.5),
            (2, 4, 0.2),
            (3, 4, -0.9),
            (4, 5, -1.0),
        ];
        let v = breadth_first(1u32, 5, graph(&edges));
        let at = |n: u32| v.iter().position(|x| x.node == n).unwrap();
        assert_eq!(path_of(&v, at(4)), vec![1, 2, 4]);
        assert_relative_eq!(v[at(4)].weight, 0.18, epsilon = 1e-12);
        assert_eq!(path_of(&v, at(5)), vec![1, 3, 4, 5]);
        assert_relative_eq!(v[at(5)].weight, 0.45, epsilon = 1e-12);
        assert_eq!(v[at(5)].parent(), Some(at(4)));
        // a 0 after a negative product is 0, not -0
        let v = breadth_first(1u32, 2, graph(&[(1, 2, -0.5), (2, 3, 0.0)]));
        assert!(v[2].weight.is_sign_positive());
    }

    #[test]
    fn bfs_matches_exhaustive_search_with_weights_of_either_sign() {
        // deterministic pseudo-random graphs of 12 nodes, weights in [-1, 1]: every node reached
        // at its smallest depth with the highest product over every path of that length, and its
        // path gives that product
        let mut s = 987654321u64;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u32
        };
        for _ in 0..200 {
            let n = 12u32;
            let edges: Vec<(u32, u32, f64)> = (0..30)
                .map(|_| {
                    let (a, b) = (next() % n, next() % n);
                    (a, b, (next() % 21) as f64 / 10.0 - 1.0)
                })
                .filter(|e| e.0 != e.1)
                .collect();
            // one edge a pair, as one relationship's edges are
            let mut pairs = HashSet::new();
            let edges: Vec<(u32, u32, f64)> = edges
                .into_iter()
                .filter(|e| pairs.insert((e.0, e.1)))
                .collect();
            let v = breadth_first(0u32, 6, graph(&edges));
            // the reference: every walk of each length from 0, best product per (length, node)
            let mut best: Vec<HashMap<u32, f64>> = vec![HashMap::from([(0, 1.0)])];
            let mut low: Vec<HashMap<u32, f64>> = vec![HashMap::from([(0, 1.0)])];
            for d in 1..=6 {
                let (mut b, mut l) = (HashMap::new(), HashMap::new());
                for &(from, to, w) in &edges {
                    for p in [best[d - 1].get(&from), low[d - 1].get(&from)]
                        .into_iter()
                        .flatten()
                    {
                        let x = p * w;
                        let e = b.entry(to).or_insert(f64::NEG_INFINITY);
                        *e = f64::max(*e, x);
                        let e = l.entry(to).or_insert(f64::INFINITY);
                        *e = f64::min(*e, x);
                    }
                }
                best.push(b);
                low.push(l);
            }
            for (i, x) in v.iter().enumerate() {
                let first = (0..=6).find(|&d| best[d].contains_key(&x.node)).unwrap();
                assert_eq!(x.depth, first, "node {} at its smallest depth", x.node);
                assert_relative_eq!(x.weight, best[first][&x.node], epsilon = 1e-12);
                let path = path_of(&v, i);
                assert_eq!(path.len(), x.depth + 1);
                let product: f64 = path
                    .windows(2)
                    .map(|p| {
                        edges
                            .iter()
                            .find(|e| e.0 == p[0] && e.1 == p[1])
                            .map(|e| e.2)
                            .expect("an edge of the graph")
                    })
                    .product();
                assert_relative_eq!(product, x.weight, epsilon = 1e-12);
            }
        }
    }

    #[test]
    fn edge_cost_is_the_inverse_energy_product() {
        assert_relative_eq!(edge_cost(0.5, 0.5).unwrap(), 4.0);
        assert_relative_eq!(edge_cost(1.0, 1.0).unwrap(), 1.0);
        assert_eq!(edge_cost(0.0, 1.0), None);
        // an inverse beyond f64 is no edge either (fractality.atp_floor = 0, long idle nodes)
        assert_eq!(edge_cost(1e-160, 1e-160), None);
    }

    fn energy_graph<'a>(
        edges: &'a [(u32, u32)],
        atp: &'a HashMap<u32, f64>,
        calls: &'a RefCell<usize>,
    ) -> impl FnMut(&[u32]) -> Vec<(u32, u32, f64)> + 'a {
        move |batch: &[u32]| {
            *calls.borrow_mut() += 1;
            edges
                .iter()
                .filter(|e| batch.contains(&e.0))
                .map(|&(a, b)| (a, b, atp[&b]))
                .collect()
        }
    }

    #[test]
    fn dijkstra_takes_the_energetic_detour() {
        // 1 -> 2 -> 4 through a weak node (0.1), or 1 -> 3 -> 5 -> 4 through strong ones
        let atp = HashMap::from([(1, 1.0), (2, 0.1), (3, 1.0), (4, 1.0), (5, 1.0)]);
        let edges = [(1, 2), (2, 4), (1, 3), (3, 5), (5, 4)];
        let calls = RefCell::new(0);
        let p = cheapest_path(1u32, 1.0, 4, None, 128, energy_graph(&edges, &atp, &calls)).unwrap();
        let nodes: Vec<u32> = p.iter().map(|x| x.0).collect();
        assert_eq!(nodes, vec![1, 3, 5, 4]);
        assert_relative_eq!(p[3].1, 3.0);
        // the direct way costs 10 + 10 = 20
        let p2 = cheapest_path(1u32, 1.0, 2, None, 1, energy_graph(&edges, &atp, &calls)).unwrap();
        assert_relative_eq!(p2[1].1, 10.0);
        // a budget below 3 finds nothing
        assert!(cheapest_path(
            1u32,
            1.0,
            4,
            Some(2.5),
            8,
            energy_graph(&edges, &atp, &calls)
        )
        .is_none());
        // unreachable (edges are directed)
        assert!(cheapest_path(4u32, 1.0, 1, None, 8, energy_graph(&edges, &atp, &calls)).is_none());
        // from == to: one step of cost 0
        assert_eq!(
            cheapest_path(3u32, 1.0, 3, None, 8, energy_graph(&edges, &atp, &calls)).unwrap(),
            vec![(3, 0.0)]
        );
    }

    #[test]
    fn dijkstra_matches_exhaustive_search_and_batches_its_fetches() {
        // a deterministic pseudo-random graph of 200 nodes, 4 edges each
        let n = 200u32;
        let mut s = 12345u64;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u32
        };
        let atp: HashMap<u32, f64> = (0..n)
            .map(|i| (i, 0.05 + (next() % 95) as f64 / 100.0))
            .collect();
        let edges: Vec<(u32, u32)> = (0..n)
            .flat_map(|i| (0..4).map(move |k| (i, k)))
            .map(|(i, _)| (i, next() % n))
            .filter(|(a, b)| a != b)
            .collect();
        // Bellman-Ford as the reference
        let mut dist = vec![f64::INFINITY; n as usize];
        dist[0] = 0.0;
        for _ in 0..n {
            for &(a, b) in &edges {
                let c = dist[a as usize] + edge_cost(atp[&a], atp[&b]).unwrap();
                if c < dist[b as usize] {
                    dist[b as usize] = c;
                }
            }
        }
        let calls = RefCell::new(0);
        for target in [1u32, 57, 133, 199] {
            let got = cheapest_path(
                0u32,
                atp[&0],
                target,
                None,
                64,
                energy_graph(&edges, &atp, &calls),
            );
            match got {
                Some(p) => {
                    assert_relative_eq!(p.last().unwrap().1, dist[target as usize], epsilon = 1e-9);
                    // costs along the path add up edge by edge
                    for w in p.windows(2) {
                        let c = edge_cost(atp[&w[0].0], atp[&w[1].0]).unwrap();
                        assert_relative_eq!(w[1].1 - w[0].1, c, epsilon = 1e-9);
                    }
                }
                None => assert!(dist[target as usize].is_infinite()),
            }
        }
        assert!(
            *calls.borrow() < 4 * 20,
            "{} fetches for 4 searches",
            calls.borrow()
        );
    }
}
