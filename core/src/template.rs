//! Prompt templates: Jinja (minijinja) over a seed row's columns and stage context.
//!
//! Templates are compiled once per task and rendered per row. Undefined variables are an
//! error (strict mode): a typo in a column name must fail loudly, not send an empty prompt.
//!
//! A template comes from a job file, so its cost is bounded: an instruction budget
//! ([`RENDER_FUEL`], minijinja's fuel) stops nested loops, and a wall-clock limit
//! ([`RENDER_TIME_LIMIT`]) stops single instructions that are slow on long strings. A render over
//! either limit is an error for that row (a failure row on a worker, an error in `validate`).
//!
//! The time limit also stops the render itself, not only the wait for it: minijinja cannot be
//! cancelled from outside, so the render thread carries its deadline and every output, filter
//! call and `range` step checks it. A loop whose body does none of these (only operators on
//! long strings) is stopped by its fuel, which shrinks as the row grows ([`fuel_for`]): an
//! instruction on a long string costs in proportion to its length, so instructions × row bytes
//! is what is budgeted, and such a render ends within about the time limit too.

use std::cell::Cell;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Names minijinja provides itself (loop helpers, globals); never reported as missing columns.
const BUILTINS: &[&str] = &[
    "range",
    "dict",
    "namespace",
    "debug",
    "loop",
    "self",
    "super",
    "caller",
    "varargs",
    "kwargs",
];

use minijinja::value::{Rest, Value};
use minijinja::{Environment, ErrorKind, State, UndefinedBehavior};

/// Instructions one render may execute: a prompt template loops over a handful of items, so
/// this is far above any real template and far below what nested loops over long strings take.
/// Rows over [`FUEL_TIERS`]' first size get less.
pub const RENDER_FUEL: u64 = 200_000;
/// Instruction budgets by the size of the row rendered (bytes of its strings): instructions ×
/// bytes stays about 3·10⁹ (a couple of seconds of copying), so a loop of operators over a 4 MB
/// row stops by fuel as soon as the deadline would stop a loop with output. A real template
/// (tens to hundreds of instructions) fits every tier.
pub const FUEL_TIERS: [(usize, u64); 5] = [
    (16 << 10, RENDER_FUEL),
    (64 << 10, 50_000),
    (256 << 10, 12_000),
    (1 << 20, 3_000),
    (usize::MAX, 1_000),
];
/// Time one render may take before the row is given up.
pub const RENDER_TIME_LIMIT: Duration = Duration::from_secs(2);
use sha2::{Digest, Sha256};

thread_local! {
    /// The deadline of the render running on this thread (each render has its own thread).
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

fn past_deadline() -> bool {
    DEADLINE.get().is_some_and(|d| Instant::now() >= d)
}

/// Stops the render on this thread once it is past its deadline.
fn check_deadline() -> Result<(), minijinja::Error> {
    if past_deadline() {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "render time limit reached",
        ));
    }
    Ok(())
}

/// Builtin filters that take time in proportion to their input: each call checks the
/// deadline first, so a loop that applies them to long strings stops at the limit.
macro_rules! guard_filters {
    ($env:ident, $($name:literal => $filter:path),* $(,)?) => {$(
        let filter = Value::from_function($filter);
        $env.add_filter($name, move |state: &State, args: Rest<Value>| {
            check_deadline()?;
            filter.call(state, &args)
        });
    )*};
}

/// The deadline checks: on every output, every costly filter, and every step of `range`.
fn guard_with_deadline(env: &mut Environment<'static>) {
    use minijinja::filters;
    env.set_formatter(|out, state, value| {
        check_deadline()?;
        minijinja::escape_formatter(out, state, value)
    });
    guard_filters!(env,
        "upper" => filters::upper, "lower" => filters::lower, "title" => filters::title,
        "capitalize" => filters::capitalize, "replace" => filters::replace,
        "length" => filters::length, "count" => filters::length, "trim" => filters::trim,
        "join" => filters::join, "split" => filters::split, "lines" => filters::lines,
        "reverse" => filters::reverse, "list" => filters::list, "string" => filters::string,
        "sort" => filters::sort, "unique" => filters::unique, "indent" => filters::indent,
        "format" => filters::format, "tojson" => filters::tojson, "sum" => filters::sum,
        "batch" => filters::batch, "slice" => filters::slice, "map" => filters::map,
        "select" => filters::select, "reject" => filters::reject,
        "selectattr" => filters::selectattr, "rejectattr" => filters::rejectattr,
        "groupby" => filters::groupby, "dictsort" => filters::dictsort,
        "pprint" => filters::pprint,
    );
    env.add_function(
        "range",
        |lower: isize, upper: Option<isize>, step: Option<isize>| {
            check_deadline()?;
            let items = minijinja::functions::range(lower, upper, step)?;
            // A loop over the range ends at the deadline (the render then reports the limit).
            Ok::<_, minijinja::Error>(Value::make_iterable(move || {
                items
                    .try_iter()
                    .into_iter()
                    .flatten()
                    .take_while(|_| !past_deadline())
            }))
        },
    );
}

/// The tier of [`FUEL_TIERS`] for a row of `bytes`.
pub fn fuel_for(bytes: usize) -> usize {
    FUEL_TIERS
        .iter()
        .position(|(max, _)| bytes <= *max)
        .unwrap_or(FUEL_TIERS.len() - 1)
}

/// Bytes of the strings (keys included) in a render context: what one instruction may copy.
fn context_bytes(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::String(s) => s.len(),
        serde_json::Value::Array(a) => a.iter().map(context_bytes).sum::<usize>() + a.len(),
        serde_json::Value::Object(m) => m.iter().map(|(k, v)| k.len() + context_bytes(v)).sum(),
        _ => 8,
    }
}

/// An environment holding the template `prompt`, with the guards and `fuel`.
fn build_env(source: &str, fuel: u64) -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(false);
    env.set_fuel(Some(fuel));
    guard_with_deadline(&mut env);
    env.add_template_owned("prompt", source.to_string())?;
    Ok(env)
}

/// A compiled prompt template with its lineage hash.
#[derive(Clone)]
pub struct PromptTemplate {
    /// One environment per fuel tier, compiled when a row of that size first comes.
    envs: Arc<[OnceLock<Arc<Environment<'static>>>; FUEL_TIERS.len()]>,
    hash: String,
    source: Arc<str>,
    /// Top-level variables, computed once: checked per row to name a missing column.
    vars: Arc<Vec<String>>,
}

impl std::fmt::Debug for PromptTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptTemplate")
            .field("hash", &self.hash)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template syntax: {0}")]
    Syntax(String),
    #[error("template render: {0}")]
    Render(String),
    #[error("template render took longer than {0:?}; the template is too costly for this row")]
    TooSlow(Duration),
    #[error("missing column {}: the template reads it but the row has no such field (row has: {})", .missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "), .present.join(", "))]
    MissingColumn {
        missing: Vec<String>,
        present: Vec<String>,
    },
}

fn describe(e: &minijinja::Error) -> String {
    let mut msg = e.to_string();
    if let Some(line) = e.line() {
        if !msg.contains("line") {
            msg.push_str(&format!(" (template line {line})"));
        }
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

impl PromptTemplate {
    pub fn new(source: &str) -> Result<Self, TemplateError> {
        let env =
            build_env(source, FUEL_TIERS[0].1).map_err(|e| TemplateError::Syntax(describe(&e)))?;
        let hash = hex::encode(&Sha256::digest(source.as_bytes())[..8]);
        let vars = {
            let t = env.get_template("prompt").expect("just added");
            let mut v: Vec<String> = t
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| !BUILTINS.contains(&v.as_str()))
                .collect();
            v.sort();
            v
        };
        let envs: [OnceLock<Arc<Environment<'static>>>; FUEL_TIERS.len()] = Default::default();
        let _ = envs[0].set(Arc::new(env));
        Ok(PromptTemplate {
            envs: Arc::new(envs),
            hash,
            source: source.into(),
            vars: Arc::new(vars),
        })
    }

    /// Short content hash, stored with every record as lineage.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Top-level variables the template reads (seed columns and context keys).
    pub fn variables(&self) -> Vec<String> {
        self.vars.as_ref().clone()
    }

    /// Renders; a top-level variable absent from `ctx` (or null) is reported by name, so a row
    /// without its text column fails with "missing column `text`", not a generic render error.
    pub fn render(&self, ctx: &serde_json::Value) -> Result<String, TemplateError> {
        if let Some(obj) = ctx.as_object() {
            let missing: Vec<String> = self
                .vars
                .iter()
                .filter(|v| obj.get(v.as_str()).is_none_or(|x| x.is_null()))
                .filter(|v| !BUILTINS.contains(&v.as_str()))
                .cloned()
                .collect();
            if !missing.is_empty() {
                let mut present: Vec<String> = obj.keys().cloned().collect();
                present.sort();
                return Err(TemplateError::MissingColumn { missing, present });
            }
        }
        self.render_within(ctx.clone(), RENDER_TIME_LIMIT)
    }

    /// Renders on a helper thread and waits at most `limit`; the render stops itself at the
    /// same deadline (see the module doc), so a timed-out row does not keep a core busy.
    fn render_within(
        &self,
        ctx: serde_json::Value,
        limit: Duration,
    ) -> Result<String, TemplateError> {
        let (rx, _render) = self.start_render(ctx, limit)?;
        match rx.recv_timeout(limit) {
            Ok(result) => result,
            Err(_) => Err(TemplateError::TooSlow(limit)),
        }
    }

    /// Starts a render that must end by `limit` from now: its result arrives on the channel,
    /// and a render that ran past the deadline reports [`TemplateError::TooSlow`] even if it
    /// got to the end (a loop cut short at the deadline would render a truncated prompt).
    #[allow(clippy::type_complexity)]
    fn start_render(
        &self,
        ctx: serde_json::Value,
        limit: Duration,
    ) -> Result<
        (
            mpsc::Receiver<Result<String, TemplateError>>,
            JoinHandle<()>,
        ),
        TemplateError,
    > {
        let tier = fuel_for(context_bytes(&ctx));
        let env = self.envs[tier]
            .get_or_init(|| {
                // The source compiled in `new`, so only the fuel differs.
                Arc::new(build_env(&self.source, FUEL_TIERS[tier].1).expect("compiled in new()"))
            })
            .clone();
        let deadline = Instant::now() + limit;
        let (tx, rx) = mpsc::sync_channel(1);
        let handle = std::thread::Builder::new()
            .name("template-render".into())
            .spawn(move || {
                DEADLINE.set(Some(deadline));
                let t = env.get_template("prompt").expect("added in new()");
                let result = t.render(&ctx);
                let result = if past_deadline() {
                    Err(TemplateError::TooSlow(limit))
                } else {
                    result.map_err(|e| TemplateError::Render(describe(&e)))
                };
                let _ = tx.send(result);
            })
            .map_err(|e| TemplateError::Render(format!("cannot start render: {e}")))?;
        Ok((rx, handle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_columns_and_reports_variables() {
        let t = PromptTemplate::new("Write for {{ audience }} about {{ text | upper }}").unwrap();
        assert_eq!(t.variables(), vec!["audience", "text"]);
        let looping = PromptTemplate::new("{% for i in range(2) %}{{ text }}{% endfor %}").unwrap();
        assert_eq!(
            looping.variables(),
            vec!["text"],
            "builtins are not columns"
        );
        let out = t
            .render(&json!({"text": "bees", "audience": "kids"}))
            .unwrap();
        assert_eq!(out, "Write for kids about BEES");
        assert_eq!(t.hash().len(), 16);
    }

    #[test]
    fn missing_column_is_an_error_naming_it() {
        let t = PromptTemplate::new("About {{ txet }}").unwrap();
        let e = t.render(&json!({"text": "bees"})).unwrap_err().to_string();
        assert!(
            e.contains("missing column `txet`") && e.contains("text"),
            "{e}"
        );
    }

    #[test]
    fn nested_loops_run_out_of_fuel() {
        let t = PromptTemplate::new(
            "{% for a in text %}{% for b in text %}{% for c in text %}{{ a }}{% endfor %}{% endfor %}{% endfor %}",
        )
        .unwrap();
        let started = std::time::Instant::now();
        let e = t
            .render(&json!({"text": "x".repeat(1000)}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("fuel"), "{e}");
        assert!(
            started.elapsed() < RENDER_TIME_LIMIT,
            "{:?}",
            started.elapsed()
        );
        // The same template over a short row is fine.
        assert_eq!(t.render(&json!({"text": "ab"})).unwrap().len(), 8);
    }

    #[test]
    fn a_slow_render_is_given_up_at_the_time_limit() {
        // Few instructions, each slow on a long string: the fuel alone would not stop it soon.
        let t = PromptTemplate::new(
            "{% for i in range(5000) %}{{ (text ~ text) | upper | length }}{% endfor %}",
        )
        .unwrap();
        let started = std::time::Instant::now();
        let e = t
            .render_within(
                json!({"text": "x".repeat(4_000_000)}),
                Duration::from_millis(100),
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("longer than"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    /// Waits up to `within` for the render thread to end.
    fn ends_within(handle: &JoinHandle<()>, within: Duration) -> bool {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if handle.is_finished() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        handle.is_finished()
    }

    #[test]
    fn a_timed_out_render_stops_promptly() {
        // Each of these runs for tens of seconds on a 4 MB row before its fuel runs out: an
        // output per step, a filter per step, a `range` loop of operators only.
        for source in [
            "{% for i in range(5000) %}{{ (text ~ text) | upper | length }}{% endfor %}",
            "{% for c in text %}{% if (text ~ c) | length > 1 %}{% endif %}{% endfor %}",
            "{% for i in range(100000) %}{% set t = text ~ text %}{% endfor %}done",
        ] {
            let t = PromptTemplate::new(source).unwrap();
            let limit = Duration::from_millis(100);
            let (rx, render) = t
                .start_render(json!({"text": "x".repeat(4_000_000)}), limit)
                .unwrap();
            let result = rx.recv_timeout(limit + Duration::from_secs(5)).unwrap();
            // The deadline or the row-size fuel tier, whichever comes first.
            let stopped = match &result {
                Err(TemplateError::TooSlow(_)) => true,
                Err(TemplateError::Render(m)) => m.contains("fuel"),
                _ => false,
            };
            assert!(stopped, "{source}: {result:?}");
            assert!(
                ends_within(&render, Duration::from_secs(2)),
                "{source}: the render kept running past its limit"
            );
        }
    }

    #[test]
    fn a_loop_of_operators_over_a_long_row_stops_by_its_shrunken_fuel() {
        // No output, filter or `range` in the loop: only the fuel can stop it, and on a 4 MB
        // row every instruction copies megabytes, so the budget is a tier's, not RENDER_FUEL.
        let t = PromptTemplate::new("{% for c in text %}{% set t = text ~ c %}{% endfor %}done")
            .unwrap();
        let (rx, render) = t
            .start_render(
                json!({"text": "x".repeat(4_000_000)}),
                Duration::from_secs(60),
            )
            .unwrap();
        let result = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        let e = result.unwrap_err().to_string();
        assert!(e.contains("fuel"), "{e}");
        assert!(ends_within(&render, Duration::from_secs(1)));
        // The same template on a short row renders: the small tier keeps the full budget.
        assert_eq!(t.render(&json!({"text": "ab"})).unwrap(), "done");
        assert_eq!(fuel_for(10), 0);
        assert_eq!(fuel_for(4_000_000), FUEL_TIERS.len() - 1);
    }

    #[test]
    fn guarded_filters_and_range_behave_as_the_builtins() {
        let t = PromptTemplate::new(
            "{{ text | upper }} {{ items | join(', ') }} {{ items | length }} \
             {% for i in range(1, 7, 2) %}{{ i }}{% endfor %} {{ '%s-%s' | format(1, 2) }} \
             {{ items | map('upper') | list | tojson }} {{ text | replace('e', 'E') }}",
        )
        .unwrap();
        let out = t
            .render(&json!({"text": "bees", "items": ["a", "b"]}))
            .unwrap();
        assert_eq!(out, "BEES a, b 2 135 1-2 [\"A\",\"B\"] bEEs");
        let e = PromptTemplate::new("{{ range(200000) | length }}")
            .unwrap()
            .render(&json!({}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("too many elements"), "{e}");
    }

    #[test]
    fn syntax_error_reported() {
        let e = PromptTemplate::new("About {{ text ")
            .unwrap_err()
            .to_string();
        assert!(e.contains("syntax"), "{e}");
    }
}
