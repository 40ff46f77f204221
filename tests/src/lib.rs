//! Test support shared by the integration tests (`it/`) and the benchmarks: the counting test
//! origin, which stands in for a registry or object store and counts every byte that leaves it,
//! so a test can assert that P2P distribution actually spared the origin; a cluster identity CA
//! ([`pki`]) that issues the daemons' certificates; and the benchmarks behind `df-bench`, which
//! run the real binaries and measure them.

pub mod bench;
pub mod origin;
pub mod pki;
