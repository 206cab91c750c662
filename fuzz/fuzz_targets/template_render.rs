//! Template source → `PromptTemplate::new` → `render` with the render limits (fuel and wall
//! clock). The input is the template text, a NUL byte, then bytes that shape the row: every
//! variable the template reads gets a value (a string up to about a megabyte, a number, a
//! list or a map), so renders get past the missing-column check and run the template.
//! Properties: a render returns (text or error) within the time limit plus a margin, and a
//! missing column is only reported for a column the row really lacks.
#![no_main]

use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use synthforge_core::template::{PromptTemplate, TemplateError, RENDER_TIME_LIMIT};

/// How long past the limit a render may take to come back (thread start, scheduling).
const MARGIN: Duration = Duration::from_millis(1500);

#[derive(Arbitrary, Debug)]
enum Cell {
    Text(String),
    /// `text` repeated `n * 4096` times: long rows are where single instructions get slow.
    Long(String, u8),
    Number(i64),
    Float(f64),
    Bool(bool),
    List(Vec<String>),
    Map(Vec<(String, String)>),
}

impl Cell {
    fn to_json(&self) -> Value {
        match self {
            Cell::Text(s) => json!(s),
            Cell::Long(s, n) => {
                let unit = if s.is_empty() { "x" } else { s.as_str() };
                let times = (usize::from(*n) * 4096).min(1 << 20) / unit.len().max(1);
                json!(unit.repeat(times.max(1)))
            }
            Cell::Number(n) => json!(n),
            Cell::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Cell::Bool(b) => json!(b),
            Cell::List(v) => json!(v),
            Cell::Map(kv) => Value::Object(kv.iter().map(|(k, v)| (k.clone(), json!(v))).collect()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let Ok(source) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let Ok(template) = PromptTemplate::new(source) else {
        return;
    };
    let mut u = Unstructured::new(data.get(split + 1..).unwrap_or_default());
    let mut row = Map::new();
    for var in template.variables() {
        // Leave a column out now and then to exercise the missing-column report.
        if u.ratio(1, 16).unwrap_or(false) {
            continue;
        }
        let cell = Cell::arbitrary(&mut u).unwrap_or(Cell::Text("bees".into()));
        row.insert(var, cell.to_json());
    }
    let started = Instant::now();
    let result = template.render(&Value::Object(row.clone()));
    let took = started.elapsed();
    assert!(
        took < RENDER_TIME_LIMIT + MARGIN,
        "render took {took:?}, limit {RENDER_TIME_LIMIT:?}"
    );
    if let Err(TemplateError::MissingColumn { missing, .. }) = &result {
        for m in missing {
            assert!(
                row.get(m).is_none_or(Value::is_null),
                "`{m}` reported missing but the row has it"
            );
        }
    }
});
