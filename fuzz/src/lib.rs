//! Fuzz targets of rwsplit for cargo-fuzz (scripts/fuzz.sh); see targets.rs.
pub mod targets;
