//! The workspace's one integration test binary: in-process clusters (`p2p`), the real
//! binaries driven as an operator would (`cli`), and the benchmarks at toy size (`bench`).

mod bench;
mod cli;
mod cluster;
mod e2e;
mod p2p;
mod proxy;
