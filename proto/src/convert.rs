//! The one place where wire messages and core domain types meet: `From` for what can always be
//! converted, `TryFrom` with a [`WireError`] naming the field for what a peer may send wrong.
//!
//! The conversions live here rather than in core so that core stays free of the wire format
//! (proto depends on core, never the reverse). Coordinator-only types convert in the
//! coordinator's `serve::convert`.

use synthforge_core::backend::{BackendSnapshot, EndpointSnapshot};
use synthforge_core::dedup_phase::{DedupKind, DedupWork};
use synthforge_core::input::TaskSlice;
use synthforge_core::sink::WrittenFile;
use synthforge_core::spec::InputFormat;
use synthforge_core::stats::{FailureExample, SeedOutcomes, TaskStats};

use crate::v1 as pb;

/// A wire message a peer sent that does not make a valid domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("`{field}` is missing")]
    Missing { field: &'static str },
    #[error("`{field}` is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// Unwraps an optional sub-message, naming it when absent.
pub fn required<T>(value: Option<T>, field: &'static str) -> Result<T, WireError> {
    value.ok_or(WireError::Missing { field })
}

impl From<&DedupWork> for pb::DedupWork {
    fn from(w: &DedupWork) -> Self {
        let (kind, band) = match w.kind {
            DedupKind::Exact => ("exact", 0),
            DedupKind::Band(b) => ("band", b),
        };
        pb::DedupWork {
            kind: kind.to_string(),
            band,
            range: w.range,
            ranges: w.ranges,
        }
    }
}

impl TryFrom<&pb::DedupWork> for DedupWork {
    type Error = WireError;

    fn try_from(p: &pb::DedupWork) -> Result<Self, WireError> {
        let kind = match p.kind.as_str() {
            "exact" => DedupKind::Exact,
            "band" => DedupKind::Band(p.band),
            other => {
                return Err(WireError::Invalid {
                    field: "DedupWork.kind",
                    reason: format!("unknown dedup task kind `{other}`"),
                })
            }
        };
        if p.ranges == 0 || p.range >= p.ranges {
            return Err(WireError::Invalid {
                field: "DedupWork.range",
                reason: format!("range {} of {}", p.range, p.ranges),
            });
        }
        Ok(DedupWork {
            kind,
            range: p.range,
            ranges: p.ranges,
        })
    }
}

impl From<&TaskSlice> for pb::TaskInput {
    fn from(s: &TaskSlice) -> Self {
        pb::TaskInput {
            object_url: s.object_url.clone(),
            format: s.format.as_str().to_string(),
            row_start: s.row_start,
            row_count: s.row_count,
            byte_start: s.byte_start,
            byte_end: s.byte_end,
            row_groups: s.row_groups.clone(),
            global_row_start: s.global_row_start,
        }
    }
}

impl TryFrom<&pb::TaskInput> for TaskSlice {
    type Error = WireError;

    fn try_from(p: &pb::TaskInput) -> Result<Self, WireError> {
        let format = InputFormat::parse(&p.format).ok_or_else(|| WireError::Invalid {
            field: "TaskInput.format",
            reason: format!("unknown input format `{}`", p.format),
        })?;
        Ok(TaskSlice {
            object_url: p.object_url.clone(),
            format,
            row_start: p.row_start,
            row_count: p.row_count,
            byte_start: p.byte_start,
            byte_end: p.byte_end,
            row_groups: p.row_groups.clone(),
            global_row_start: p.global_row_start,
        })
    }
}

impl From<&WrittenFile> for pb::OutputFile {
    fn from(f: &WrittenFile) -> Self {
        pb::OutputFile {
            path: f.path.clone(),
            rows: f.rows,
            bytes: f.bytes,
            kind: f.kind.clone(),
        }
    }
}

impl From<&pb::OutputFile> for WrittenFile {
    fn from(f: &pb::OutputFile) -> Self {
        WrittenFile {
            path: f.path.clone(),
            rows: f.rows,
            bytes: f.bytes,
            kind: f.kind.clone(),
        }
    }
}

impl From<&TaskStats> for pb::TaskStats {
    fn from(s: &TaskStats) -> Self {
        pb::TaskStats {
            rows_in: s.rows_in,
            rows_out: s.rows_out,
            rows_failed: s.rows_failed,
            prompt_tokens: s.prompt_tokens,
            completion_tokens: s.completion_tokens,
            removed: s.removed.clone().into_iter().collect(),
            prompt_tokens_by_model: s.prompt_tokens_by_model.clone().into_iter().collect(),
            completion_tokens_by_model: s.completion_tokens_by_model.clone().into_iter().collect(),
            pii_redactions: s.pii_redactions.clone().into_iter().collect(),
            seeds_output: s.seeds.output,
            seeds_removed: s.seeds.removed.clone().into_iter().collect(),
            seeds_failed: s.seeds.failed.clone().into_iter().collect(),
            failed: s.failed.clone().into_iter().collect(),
            failed_examples: s
                .failed_examples
                .iter()
                .map(|(k, e)| {
                    let e = pb::FailureExample {
                        seed_id: e.seed_id.clone(),
                        source: e.source.clone(),
                        error: e.error.clone(),
                    };
                    (k.clone(), e)
                })
                .collect(),
        }
    }
}

impl From<&pb::TaskStats> for TaskStats {
    fn from(p: &pb::TaskStats) -> Self {
        TaskStats {
            rows_in: p.rows_in,
            rows_out: p.rows_out,
            rows_failed: p.rows_failed,
            prompt_tokens: p.prompt_tokens,
            completion_tokens: p.completion_tokens,
            removed: p.removed.clone().into_iter().collect(),
            prompt_tokens_by_model: p.prompt_tokens_by_model.clone().into_iter().collect(),
            completion_tokens_by_model: p.completion_tokens_by_model.clone().into_iter().collect(),
            pii_redactions: p.pii_redactions.clone().into_iter().collect(),
            seeds: SeedOutcomes {
                output: p.seeds_output,
                removed: p.seeds_removed.clone().into_iter().collect(),
                failed: p.seeds_failed.clone().into_iter().collect(),
            },
            failed: p.failed.clone().into_iter().collect(),
            failed_examples: p
                .failed_examples
                .iter()
                .map(|(k, e)| {
                    let e = FailureExample {
                        seed_id: e.seed_id.clone(),
                        source: e.source.clone(),
                        error: e.error.clone(),
                    };
                    (k.clone(), e)
                })
                .collect(),
        }
    }
}

impl From<BackendSnapshot> for pb::BackendStats {
    fn from(b: BackendSnapshot) -> Self {
        pb::BackendStats {
            name: b.name,
            model: b.model,
            limit: b.limit,
            in_flight: b.in_flight,
            prompt_tokens: b.prompt_tokens,
            completion_tokens: b.completion_tokens,
            retries: b.retries,
            endpoints: b.endpoints.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<EndpointSnapshot> for pb::EndpointStats {
    fn from(e: EndpointSnapshot) -> Self {
        pb::EndpointStats {
            url: e.url,
            limit: e.limit,
            in_flight: e.in_flight,
            requests_ok: e.requests_ok,
            errors_by_code: e
                .errors_by_code
                .into_iter()
                .map(|(code, n)| (u32::from(code), n))
                .collect(),
            latency_p50_ms: e.latency_p50_ms,
            latency_p95_ms: e.latency_p95_ms,
            ejected: e.ejected,
        }
    }
}

impl TryFrom<&pb::BackendStats> for BackendSnapshot {
    type Error = WireError;

    fn try_from(b: &pb::BackendStats) -> Result<Self, WireError> {
        Ok(BackendSnapshot {
            name: b.name.clone(),
            model: b.model.clone(),
            limit: b.limit,
            in_flight: b.in_flight,
            prompt_tokens: b.prompt_tokens,
            completion_tokens: b.completion_tokens,
            retries: b.retries,
            endpoints: b
                .endpoints
                .iter()
                .map(EndpointSnapshot::try_from)
                .collect::<Result<_, _>>()?,
        })
    }
}

impl TryFrom<&pb::EndpointStats> for EndpointSnapshot {
    type Error = WireError;

    fn try_from(e: &pb::EndpointStats) -> Result<Self, WireError> {
        let errors_by_code = e
            .errors_by_code
            .iter()
            .map(|(&code, &n)| {
                u16::try_from(code)
                    .map(|code| (code, n))
                    .map_err(|_| WireError::Invalid {
                        field: "EndpointStats.errors_by_code",
                        reason: format!("{code} is not an HTTP status"),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(EndpointSnapshot {
            url: e.url.clone(),
            limit: e.limit,
            in_flight: e.in_flight,
            requests_ok: e.requests_ok,
            errors_by_code,
            latency_p50_ms: e.latency_p50_ms,
            latency_p95_ms: e.latency_p95_ms,
            ejected: e.ejected,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn dedup_work_round_trips_and_bad_ranges_are_refused() {
        for kind in [DedupKind::Exact, DedupKind::Band(13)] {
            let w = DedupWork {
                kind,
                range: 2,
                ranges: 3,
            };
            assert_eq!(DedupWork::try_from(&pb::DedupWork::from(&w)).unwrap(), w);
        }
        let mut wire = pb::DedupWork::from(&DedupWork {
            kind: DedupKind::Exact,
            range: 0,
            ranges: 1,
        });
        wire.range = 1;
        assert!(DedupWork::try_from(&wire).is_err());
        wire.range = 0;
        wire.kind = "fuzzy".into();
        assert!(DedupWork::try_from(&wire).is_err());
    }

    fn slice() -> TaskSlice {
        TaskSlice {
            object_url: "s3://b/a.parquet".into(),
            format: InputFormat::Parquet,
            row_start: 5,
            row_count: 10,
            byte_start: 0,
            byte_end: 0,
            row_groups: vec![1, 2],
            global_row_start: 105,
        }
    }

    #[test]
    fn task_slice_round_trips() {
        let s = slice();
        let wire = pb::TaskInput::from(&s);
        assert_eq!(TaskSlice::try_from(&wire).unwrap(), s);
    }

    #[test]
    fn an_unknown_format_names_the_field() {
        let mut wire = pb::TaskInput::from(&slice());
        wire.format = "csv".into();
        let err = TaskSlice::try_from(&wire).unwrap_err();
        assert!(
            matches!(
                &err,
                WireError::Invalid {
                    field: "TaskInput.format",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("csv"), "{err}");
        assert_eq!(
            required(None::<pb::TaskInput>, "TaskLease.input").unwrap_err(),
            WireError::Missing {
                field: "TaskLease.input"
            }
        );
    }

    #[test]
    fn stats_and_files_round_trip() {
        let stats = TaskStats {
            rows_in: 4,
            rows_out: 3,
            rows_failed: 1,
            prompt_tokens: 10,
            completion_tokens: 20,
            removed: BTreeMap::from([("filter:length".into(), 1)]),
            prompt_tokens_by_model: BTreeMap::from([("m".into(), 10)]),
            completion_tokens_by_model: BTreeMap::from([("m".into(), 20)]),
            pii_redactions: BTreeMap::from([("email".into(), 2)]),
            seeds: SeedOutcomes {
                output: 2,
                removed: BTreeMap::from([("filter:length".into(), 1)]),
                failed: BTreeMap::from([("generate".into(), 1)]),
            },
            failed: BTreeMap::from([("generate: HTTP 500".into(), 1)]),
            failed_examples: BTreeMap::from([(
                "generate: HTTP 500".into(),
                FailureExample {
                    seed_id: "s1".into(),
                    source: "seeds.jsonl:2".into(),
                    error: "seeds.jsonl:2: stage `generate`: HTTP 500".into(),
                },
            )]),
        };
        assert_eq!(TaskStats::from(&pb::TaskStats::from(&stats)), stats);
        let file = WrittenFile {
            path: "data/part-000001-1.parquet".into(),
            rows: 3,
            bytes: 1000,
            kind: "data".into(),
        };
        assert_eq!(WrittenFile::from(&pb::OutputFile::from(&file)), file);
    }

    #[test]
    fn backend_snapshots_round_trip_and_bad_status_codes_are_refused() {
        let snap = BackendSnapshot {
            name: "gen".into(),
            model: "m".into(),
            limit: 8,
            in_flight: 2,
            prompt_tokens: 1,
            completion_tokens: 2,
            retries: 3,
            endpoints: vec![EndpointSnapshot {
                url: "http://a".into(),
                limit: 8,
                in_flight: 2,
                requests_ok: 5,
                errors_by_code: BTreeMap::from([(429, 1), (0, 2)]),
                latency_p50_ms: 1.5,
                latency_p95_ms: 3.0,
                ejected: false,
            }],
        };
        let mut wire = pb::BackendStats::from(snap.clone());
        assert_eq!(BackendSnapshot::try_from(&wire).unwrap(), snap);
        wire.endpoints[0].errors_by_code.insert(70_000, 1);
        let err = BackendSnapshot::try_from(&wire).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::Invalid {
                    field: "EndpointStats.errors_by_code",
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
