//! The workspace's one integration test binary: in-process clusters (`p2p`), and the real
//! binaries driven as an operator would (`cli`), and `dfctl top` on a real terminal (`top`).

mod cli;
mod cluster;
mod e2e;
mod p2p;
mod proxy;
mod top;
