//! `df-bench sim`: a discrete-event, flow-level simulator of a swarm, for the sizes one machine
//! cannot run as processes (2,600 or 10,000 hosts).
//!
//! Roles, one file each: [`engine`] (simulated time, the event queue, the loop), [`network`]
//! (caps and fair sharing of each link), [`protocol`] (the adapter trait between the engine and
//! the decision logic).

pub mod engine;
pub mod heap;
pub mod network;
pub mod protocol;
pub mod report;
pub mod scenario;
