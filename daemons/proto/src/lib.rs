//! The gRPC contract between `dfdaemon` and `dfscheduler`. Generated code only; conversions to
//! domain types live with the code that uses them, so this crate changes only when the wire does.

pub mod codec;

#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod scheduler {
    pub mod v1 {
        tonic::include_proto!("scheduler.v1");
    }
}
