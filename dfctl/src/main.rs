//! `dfctl` entry point: parse, run, and turn an error into one `dfctl: ...` line on stderr with
//! exit status 1.

use std::process::ExitCode;

use clap::Parser as _;
use dfctl::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.run().await {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => {
            // `dfctl ... | head` closed our stdout: the reader has what it wanted.
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dfctl: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error chain joined with `: `, with any embedded newlines flattened.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
