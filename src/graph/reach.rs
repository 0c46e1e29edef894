//! The walks over the store: `traverse`'s breadth-first walk, reading several levels ahead while
//! the frontier is small, and `consciousness_path`'s Dijkstra, both [`super::walk`]'s algorithms
//! fed by [`super::store`]'s queries (SPI connected, as the caller).

use pgrx::Uuid;

use crate::errors::{node_not_found, FractalityError};

use super::store::{self, UuidArray};
use super::walk::{breadth_first, cheapest_path, path_of, Ahead};

/// How many frontier nodes `consciousness_path` expands per query.
const PATH_BATCH: usize = 128;
/// traverse reads the levels left in one query from a frontier of at most this many nodes...
const AHEAD_FRONTIER: usize = 16;
/// ... when they hold fewer edges than this.
const AHEAD_BUDGET: i64 = 256;
/// The most node ids `traverse`'s paths hold together (16 bytes each, 512 MB): its rows are
/// built in the process's own memory, beyond PostgreSQL's memory contexts, where a failed
/// allocation ends the server. A walk of 100 levels reaching 2 000 000 nodes would ask for 3 GB.
pub const MAX_PATH_IDS: usize = 32_000_000;
/// The most edges a walk reads (each about 40 bytes as read, and a node of the walk, about 100
/// more, for each new node it reaches): a wide walk's memory, which the paths' bound does not
/// hold when the paths are short.
pub const MAX_EDGES: i64 = 4_000_000;
/// The hint of both.
const TOO_WIDE: &str = "traverse returns every node reached with its whole path: walk less deep (max_depth), or from a node with fewer descendants.";

/// `fetch` for a walk: the answer of `query`, or no edges once one query has failed (the walk
/// then ends, and the caller returns the error it keeps in `failed`).
fn or_stop<T>(
    failed: &mut Option<FractalityError>,
    query: impl FnOnce() -> Result<Vec<T>, FractalityError>,
) -> Vec<T> {
    if failed.is_some() {
        return Vec::new();
    }
    query().unwrap_or_else(|e| {
        *failed = Some(e);
        Vec::new()
    })
}

pub(super) type TraverseRow = (Uuid, String, i32, UuidArray, f64);

/// The rows of `traverse`.
pub(super) fn walk_from(
    root: Uuid,
    depth: usize,
    relationship: &str,
) -> Result<Vec<TraverseRow>, FractalityError> {
    let mut failed = None;
    // while the frontier is small, one query reads the edges of every level left (a query per
    // level would cost more than its few rows); once such a read overflows its budget, a query
    // per level
    let mut ahead: Option<Ahead<Uuid>> = None;
    let mut overflowed = false;
    let mut level = 0;
    // the edges the walk may read in all (each a node it may reach)
    let mut edges_left = MAX_EDGES;
    let visits = breadth_first(root, depth, |frontier| {
        crate::errors::interrupts();
        level += 1;
        or_stop(&mut failed, || {
            if let Some(edges) = ahead.as_ref().and_then(|a| a.edges(frontier)) {
                return Ok(edges);
            }
            // ids are sent in index order: the scan's own sort of the array finds it sorted,
            // and consecutive descents share the upper pages of the index
            let mut ids = frontier.to_vec();
            ids.sort_unstable();
            let steps = (depth + 1 - level) as i32;
            if !overflowed && steps > 1 && ids.len() <= AHEAD_FRONTIER {
                let rows = store::edges_ahead(ids.clone(), relationship, steps, AHEAD_BUDGET)?;
                edges_left -= rows.len() as i64;
                if (rows.len() as i64) < AHEAD_BUDGET {
                    let known = Ahead::new(&ids, &rows, steps);
                    let edges = known.edges(frontier).unwrap_or_default();
                    ahead = Some(known);
                    return Ok(edges);
                }
                overflowed = true;
            }
            let edges = store::level_edges(ids, relationship, edges_left.max(0) + 1)?;
            edges_left -= edges.len() as i64;
            if edges_left < 0 {
                return Err(FractalityError::Limit {
                    what: format!(
                        "traverse from {root}: more than {MAX_EDGES} edges to read by depth {level}"
                    ),
                    hint: TOO_WIDE,
                });
            }
            Ok(edges)
        })
    });
    if let Some(e) = failed {
        return Err(e);
    }
    // every node reached is returned with its whole path, built here in the process's memory
    let path_ids: usize = visits.iter().map(|v| v.depth + 1).sum();
    if path_ids > MAX_PATH_IDS {
        return Err(FractalityError::Limit {
            what: format!(
                "traverse from {root}: {} nodes reached, whose paths hold {path_ids} ids together (at most {MAX_PATH_IDS})",
                visits.len()
            ),
            hint: TOO_WIDE,
        });
    }
    let mut ids: Vec<Uuid> = visits.iter().map(|v| v.node).collect();
    ids.sort_unstable();
    let mut keys = store::node_keys(ids)?;
    // the root's key is fetched with the others: a root the caller cannot see has no key
    // (and, row-level security hiding its edges too, nothing was walked from it)
    if !keys.contains_key(&root) {
        return Err(node_not_found(root));
    }
    Ok((0..visits.len())
        .filter_map(|i| {
            let v = &visits[i];
            // an edge can only point at a node of its own tenant (composite foreign key), so
            // every node is visible; skip rather than fail should a policy say otherwise
            let key = keys.remove(&v.node)?;
            Some((
                v.node,
                key,
                v.depth as i32,
                UuidArray(path_of(&visits, i)),
                v.weight,
            ))
        })
        .collect())
}

/// The cheapest path from `from` to `to` (see [`cheapest_path`]), `None` when there is none.
pub(super) fn path_between(
    from: Uuid,
    to: Uuid,
    max_cost: Option<f64>,
) -> Result<Option<Vec<(Uuid, f64)>>, FractalityError> {
    let ends = store::energies(vec![from, to])?;
    for n in [from, to] {
        if !ends.contains_key(&n) {
            return Err(node_not_found(n));
        }
    }
    let mut failed = None;
    // the edges the search may read in all (each read is held, with a node it reaches)
    let mut edges_left = MAX_EDGES;
    let path = cheapest_path(from, ends[&from], to, max_cost, PATH_BATCH, |batch| {
        or_stop(&mut failed, || {
            crate::errors::interrupts();
            let edges = store::path_edges(batch.to_vec(), edges_left + 1)?;
            edges_left -= edges.len() as i64;
            if edges_left < 0 {
                return Err(FractalityError::Limit {
                    what: format!(
                        "consciousness_path from {from} to {to}: more than {MAX_EDGES} edges to read"
                    ),
                    hint: "consciousness_path reads every edge of the paths cheaper than the one it finds: give a max_cost, or search between nearer nodes.",
                });
            }
            Ok(edges)
        })
    });
    match failed {
        Some(e) => Err(e),
        None => Ok(path),
    }
}
