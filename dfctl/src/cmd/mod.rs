//! One module per `dfctl` subcommand, each with the same shape: an `Args` struct (its flags,
//! wired into the tree in `cli.rs`) and `pub async fn run(args) -> anyhow::Result<ExitCode>`.

pub mod down;
pub mod get;
pub mod status;
pub mod task;
pub mod top;
pub mod up;
