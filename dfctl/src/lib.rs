//! `dfctl`, the operator's CLI for dragonfly-lite, as a library so its pieces are unit-tested
//! and the integration tests can drive it in-process.
//!
//! - [`cli`]: the clap tree; [`cmd`]: one module per subcommand.
//! - [`cluster`]: the local cluster's state file; [`process`]: spawning-side process control
//!   (binary lookup, pid identity by start time, signals); [`helm_values`]: the Helm chart's
//!   `values.yaml`; [`helm_chart`]: the chart itself, embedded. The daemon configs dfctl writes
//!   are the daemons' own raw types from `df_core::config`, serialized.
//! - [`admin`]: the HTTP client for the daemons' admin APIs; [`render`]: tables, JSON, units.
//! - [`location`]: where a task is (merged over the schedulers) and who fed whom.
//! - [`image_ref`]: image references (`alpine:3.19`) to registry manifest URLs, for preheat.
//! - [`tui`]: `dfctl top`, the live terminal UI.
//! - [`destination`]: the one write primitive (stdout, devices in place, files atomically,
//!   links followed within `--root`); [`write_plan`]: safe writes (diff, backups, manifest);
//!   [`service_steps`]: systemctl steps run on a live node, printed elsewhere.
//!
//! Errors are `anyhow` all the way up to `main`, which prints them as one line.

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod cmd;
pub mod destination;
pub mod generated_docs;
pub mod helm_chart;
pub mod helm_values;
pub mod image_ref;
pub mod location;
pub mod pki;
pub mod process;
pub mod render;
pub mod runtime_config;
pub mod service_steps;
pub mod tui;
pub mod write_plan;
