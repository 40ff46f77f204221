//! The workspace's one integration test binary: in-process clusters (`p2p`), the real
//! binaries driven as an operator would (`cli`), and the Helm chart checked with the real helm
//! and kubernetes-validate (`helm`).

mod cli;
mod cluster;
mod e2e;
mod helm;
mod p2p;
mod proxy;
