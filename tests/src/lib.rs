//! Test support shared by the integration tests (`it/`) and the benchmark scripts: today the
//! counting test origin, which stands in for a registry or object store and counts every byte
//! that leaves it, so a test can assert that P2P distribution actually spared the origin.

pub mod origin;
