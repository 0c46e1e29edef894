//! fractality seen from a real client: the benchmark data generator and the benchmark harness.
//! The client-side tests live in `tests/`.

pub mod bench;
pub mod bench_archive;
pub mod bench_decay;
pub mod bench_graph;
pub mod bench_memory;
pub mod bench_replay;
pub mod bench_resonance;
pub mod datagen;
