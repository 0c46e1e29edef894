//! In-server test suites, run by `cargo pgrx test` inside a PostgreSQL backend with the extension
//! created (`CREATE EXTENSION fractality CASCADE`). One file per concern.

mod archive;
mod decay;
mod experience;
mod graph;
mod reliability;
mod resonance;
mod schema;
mod spi;
mod vector;
