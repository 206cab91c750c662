//! Deciding what runs where: planning a job into tasks, leasing them with fencing, the durable
//! task state, and which coordinator replica leads.

pub mod compaction;
pub mod fingerprint;
pub mod ha;
pub mod planner;
pub mod scheduler;
pub mod store;
pub mod task_machine;
