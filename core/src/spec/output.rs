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

/// The `scheduling` section: lease length and attempts per task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SchedulingSpec {
    /// How long a worker holds a task without a heartbeat before it goes back to pending.
    #[serde(default = "default_lease_s")]
    pub lease_s: f64,
    /// Attempts per task before it is failed with its last error.
    #[serde(default = "default_task_attempts")]
    pub max_attempts: u32,
}

fn default_lease_s() -> f64 {
    30.0
}

fn default_task_attempts() -> u32 {
    3
}

impl Default for SchedulingSpec {
    fn default() -> Self {
        SchedulingSpec {
            lease_s: default_lease_s(),
            max_attempts: default_task_attempts(),
        }
    }
}
