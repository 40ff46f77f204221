//! The workspace's one integration test binary: in-process clusters (`p2p`) and the bitmap
//! feed between their daemons (`bitmap_feed`), the real
//! binaries driven as an operator would (`cli`), where dfctl writes and what it leaves there
//! (`destinations`), the Helm chart checked with the real helm and kubernetes-validate
//! (`helm`) with its cluster identity in every mode (`helm_identity`), the node/cluster
//! configuration dfctl writes, checked by its real readers (`node_config`), the cluster
//! identity against hostile hosts (`identity`), private blobs in the shared cache (`access`),
//! preheat jobs
//! (`preheat`), `dfctl top` on a real terminal (`top`), daemon configs through a YAML 1.1 tool
//! (`yaml11`), upload slots that last until delivery (`upload_slot`), and the benchmarks at
//! toy size (`bench`).

mod access;
mod bench;
mod bitmap_feed;
mod cli;
mod cluster;
mod container;
mod destinations;
mod docker_path;
mod e2e;
mod helm;
mod helm_identity;
mod hostile;
mod identity;
mod node_config;
mod origin_share;
mod p2p;
mod preheat;
mod proxy;
mod release;
mod restart;
mod top;
mod upload_slot;
mod yaml11;
