//! Bundles in other tools' formats: pprof, Perfetto's JSON, and Hive-partitioned Parquet.

pub mod dataset;
pub mod perfetto;
pub mod pprof;
