//! Bundles in other tools' formats: pprof, Perfetto's JSON, the Firefox Profiler's processed profile, and Hive-partitioned Parquet.

pub mod dataset;
pub mod firefox;
pub mod perfetto;
pub mod pprof;
