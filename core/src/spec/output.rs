//! Where and how a job writes its dataset, and how its tasks are leased.

use serde::{Deserialize, Serialize};

/// The `output` section: the dataset's location and Parquet settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub path: String,
    /// Rows per record batch written to Parquet (and per row group).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// zstd (default), snappy or none.
    #[serde(default = "default_compression")]
    pub compression: String,
}

fn default_batch_rows() -> usize {
    1024
}

fn default_compression() -> String {
    "zstd".into()
}

/// The `scheduling` section: lease length, attempts per task and the job's failure budget.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SchedulingSpec {
    /// How long a worker holds a task without a heartbeat before it goes back to pending.
    #[serde(default = "default_lease_s")]
    pub lease_s: f64,
    /// Attempts per task before it is failed with its last error.
    #[serde(default = "default_task_attempts")]
    pub max_attempts: u32,
    /// Failure budget: a job whose failed seed rows (failed rows plus the rows of failed tasks)
    /// exceed this fraction of its seed rows ends `failed`, so a broken run is never reported
    /// as a success. Left out of the stored YAML at its default, so job ids stay stable.
    #[serde(
        default = "default_max_failed_fraction",
        skip_serializing_if = "is_default_max_failed_fraction"
    )]
    pub max_failed_fraction: f64,
}

fn default_lease_s() -> f64 {
    30.0
}

fn default_task_attempts() -> u32 {
    3
}

fn default_max_failed_fraction() -> f64 {
    0.01
}

fn is_default_max_failed_fraction(v: &f64) -> bool {
    *v == default_max_failed_fraction()
}

impl Default for SchedulingSpec {
    fn default() -> Self {
        SchedulingSpec {
            lease_s: default_lease_s(),
            max_attempts: default_task_attempts(),
            max_failed_fraction: default_max_failed_fraction(),
        }
    }
}
