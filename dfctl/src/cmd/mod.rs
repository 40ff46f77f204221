//! One module per `dfctl` subcommand, each with the same shape: an `Args` struct (its flags,
//! wired into the tree in `cli.rs`) and `pub async fn run(args) -> anyhow::Result<ExitCode>`.

pub mod cert;
pub mod deploy;
pub mod down;
pub mod gen_config;
pub mod get;
pub mod init;
pub mod logs;
pub mod preheat;
pub mod status;
pub mod switch;
pub mod task;
pub mod top;
pub mod up;
