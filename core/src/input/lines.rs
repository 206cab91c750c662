//! JSONL and plain-text input: one row per non-empty line.
//!
//! **Planning never reads the objects.** Each object is cut, from its size alone, into byte
//! ranges of about `rows_per_task` × [`ESTIMATED_ROW_BYTES`]; a task owns every line that
//! *starts* in its range (see [`super::line_range`]), so its row count is known only when it
//! has been read: the worker reports it, and the coordinator takes that count (a range task
//! has `row_count` 0). Only `input.limit` makes planning read: the first `limit` rows must be
//! told apart from the rest, so the objects are scanned in order up to the limit (never
//! further) and the tasks get exact row counts and line numbers, as before.
//!
//! **Row identity** must be stable across retries and worker counts without a global line
//! index: a line's index is `(object ordinal << 40) + byte offset of its first byte` (objects
//! up to 1 TiB), stored as the task's `global_row_start` base plus the offset. Indexes keep
//! input order, so dedup's "first" (smallest `(seed_index, sample_index, id)`) stays
//! deterministic; without an `id_column` the id is `row-{index}`.
//!
//! Reading streams the range in chunks: a line that is not UTF-8 or not a JSON object becomes
//! a [`BadRow`] naming its position — `file:line` (1-based, empty lines counted) where the
//! task knows its first line's number (it starts the object, or it was planned under a limit),
//! else `file@byte N`.

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::{GetOptions, GetRange, ObjectStoreExt};
use serde_json::{Map, Value};

use super::line_range::{OwnedLine, RangeLines};
use super::{
    row_id, short_name, BadRow, PlanBudget, SeedError, SeedItem, SeedRow, TaskSlice,
    MAX_PLANNED_TASKS,
};
use crate::spec::input::{InputFormat, InputSpec};
use crate::storage::Location;

/// The row size assumed when cutting objects into byte ranges without reading them: a task's
/// range is `rows_per_task` × this many bytes (short prompts give smaller tasks, long documents
/// bigger ones; either way a worker streams its range in bounded memory).
pub const ESTIMATED_ROW_BYTES: u64 = 1024;

/// Objects planned by byte range hold at most this many bytes: a row's index keeps the byte
/// offset in its low 40 bits and the object's ordinal above them.
pub const MAX_OBJECT_BYTES: u64 = 1 << OFFSET_BITS;
const OFFSET_BITS: u32 = 40;

/// Object metadata requests in flight at once while planning.
const HEAD_REQUESTS: usize = 32;

/// Bytes read past a range's end in the first request, to finish its last line without a
/// second round trip; a longer line is finished by further requests, each twice as long.
const TAIL_BYTES: u64 = 64 << 10;

/// The identity base of the rows of object number `ordinal` of the input (a planner that plans
/// the objects a step at a time adds the base of the objects before its step).
pub fn identity_base(ordinal: usize) -> u64 {
    (ordinal as u64) << OFFSET_BITS
}

/// Plans the line-format objects of a job in order: by byte ranges from their sizes, or, under
/// a limit, by scanning them up to the limit.
pub(super) async fn plan(
    objects: &[Location],
    sizes: Option<&[u64]>,
    format: InputFormat,
    budget: &mut PlanBudget,
) -> Result<Vec<TaskSlice>, SeedError> {
    let mut tasks = Vec::new();
    if budget.limit != u64::MAX {
        for (ordinal, loc) in objects.iter().enumerate() {
            if budget.exhausted() {
                break;
            }
            plan_object_scan(loc, ordinal, format, budget, &mut tasks).await?;
        }
        return Ok(tasks);
    }
    let sizes: Vec<u64> = match sizes {
        Some(sizes) => sizes.to_vec(),
        None => object_sizes(objects).await?,
    };
    let range_bytes = budget.per_task.saturating_mul(ESTIMATED_ROW_BYTES);
    for (ordinal, (loc, size)) in objects.iter().zip(sizes).enumerate() {
        plan_object_ranges(&loc.url, ordinal, size, range_bytes, format, &mut tasks)?;
    }
    Ok(tasks)
}

/// The objects' sizes from the store's metadata (no content is read).
async fn object_sizes(objects: &[Location]) -> Result<Vec<u64>, SeedError> {
    futures::stream::iter(objects)
        .map(object_size)
        .buffered(HEAD_REQUESTS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// One object's size (a named function, not a closure: the planning future must stay `Send`
/// for every lifetime, which a closure returning a borrowing future does not prove).
async fn object_size(loc: &Location) -> Result<u64, SeedError> {
    loc.store
        .head(&loc.path)
        .await
        .map(|m| m.size)
        .map_err(|e| SeedError::from(loc.store_error(e)))
}

/// Cuts one object of `size` bytes into ranges of `range_bytes`; refuses objects too large for
/// row identities and plans that would pass [`MAX_PLANNED_TASKS`].
fn plan_object_ranges(
    url: &str,
    ordinal: usize,
    size: u64,
    range_bytes: u64,
    format: InputFormat,
    tasks: &mut Vec<TaskSlice>,
) -> Result<(), SeedError> {
    if size > MAX_OBJECT_BYTES {
        return Err(SeedError::TooManyTasks {
            url: url.to_string(),
            message: format!(
                "{size} bytes: line inputs are planned by byte range up to {MAX_OBJECT_BYTES} \
                 bytes per object; split the file"
            ),
        });
    }
    let range_bytes = range_bytes.max(1);
    let count = size.div_ceil(range_bytes);
    if count.saturating_add(tasks.len() as u64) > MAX_PLANNED_TASKS {
        return Err(SeedError::TooManyTasks {
            url: url.to_string(),
            message: format!(
                "{size} bytes in ranges of {range_bytes} would make the job over \
                 {MAX_PLANNED_TASKS} tasks; raise `input.rows_per_task`"
            ),
        });
    }
    for i in 0..count {
        let start = i * range_bytes;
        tasks.push(TaskSlice {
            object_url: url.to_string(),
            format,
            row_start: 0,
            row_count: 0,
            byte_start: start,
            byte_end: (start + range_bytes).min(size),
            row_groups: vec![],
            global_row_start: identity_base(ordinal),
        });
    }
    Ok(())
}

/// Bytes a preview reads at most: enough for the first lines of any sane file.
const PREVIEW_BYTES: u64 = 4 << 20;

/// The first `rows` lines of an object of `object_size` bytes, reading at most
/// [`PREVIEW_BYTES`] of it.
pub(super) fn preview_slice(
    format: InputFormat,
    object_url: &str,
    object_size: u64,
    rows: u64,
) -> TaskSlice {
    TaskSlice {
        object_url: object_url.to_string(),
        format,
        row_start: 0,
        row_count: rows,
        byte_start: 0,
        byte_end: object_size.min(PREVIEW_BYTES),
        row_groups: vec![],
        global_row_start: 0,
    }
}

/// Under a limit: scans one object from its start and cuts tasks of `rows_per_task` rows with
/// exact counts, stopping at the limit. A task's range runs from its first row's line to just
/// past its last row's `\n`, so it owns exactly those rows.
async fn plan_object_scan(
    loc: &Location,
    ordinal: usize,
    format: InputFormat,
    budget: &mut PlanBudget,
    tasks: &mut Vec<TaskSlice>,
) -> Result<(), SeedError> {
    let (per_task, limit) = (budget.per_task, budget.limit);
    let global = &mut budget.planned;
    let mut stream = loc
        .store
        .get(&loc.path)
        .await
        .map_err(|e| loc.store_error(e))?
        .into_stream();
    let mut pos = 0u64; // byte offset of the next unread byte
    let mut line_start = 0u64;
    let mut line_no = 0u64; // physical line number of the line being read, 0-based
    let mut line_has_content = false;
    let mut task_byte_start = 0u64;
    let mut task_first_line = 0u64;
    let mut rows_in_task = 0u64;
    let push = |tasks: &mut Vec<TaskSlice>, bs: u64, be: u64, first_line: u64, n: u64| {
        tasks.push(TaskSlice {
            object_url: loc.url.clone(),
            format,
            row_start: first_line,
            row_count: n,
            byte_start: bs,
            byte_end: be,
            row_groups: vec![],
            global_row_start: identity_base(ordinal),
        });
    };
    'outer: while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| loc.store_error(e))?;
        for &b in chunk.iter() {
            pos += 1;
            if b == b'\n' {
                // Same rule as the reader: empty and "\r"-only lines are not rows.
                if line_has_content {
                    if rows_in_task == 0 {
                        task_byte_start = line_start;
                        task_first_line = line_no;
                    }
                    rows_in_task += 1;
                    if rows_in_task == per_task || *global + rows_in_task == limit {
                        push(tasks, task_byte_start, pos, task_first_line, rows_in_task);
                        *global += rows_in_task;
                        rows_in_task = 0;
                        if *global >= limit {
                            break 'outer;
                        }
                    }
                }
                line_start = pos;
                line_no += 1;
                line_has_content = false;
            } else if b != b'\r' {
                line_has_content = true;
            }
        }
    }
    if *global < limit && line_has_content {
        // A last line without a newline.
        if rows_in_task == 0 {
            task_byte_start = line_start;
            task_first_line = line_no;
        }
        rows_in_task += 1;
    }
    if rows_in_task > 0 {
        push(tasks, task_byte_start, pos, task_first_line, rows_in_task);
        *global += rows_in_task;
    }
    Ok(())
}

/// Streams a line task's rows in chunks (one per block of bytes from the store), holding only
/// the line being assembled and the chunk being decoded.
pub(super) fn read_lines(
    input: &InputSpec,
    slice: &TaskSlice,
    loc: Location,
) -> BoxStream<'static, Result<Vec<SeedItem>, SeedError>> {
    let reader = LineReader::new(input.clone(), slice.clone(), loc);
    futures::stream::try_unfold(reader, |mut r| async move {
        Ok(r.next_chunk().await?.map(|chunk| (chunk, r)))
    })
    .boxed()
}

/// The state of one task's read: what was fetched, where the next request starts, the line
/// splitter and how many rows may still come.
struct LineReader {
    input: InputSpec,
    slice: TaskSlice,
    loc: Location,
    name: String,
    split: RangeLines,
    body: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    /// Object offset where the next request starts, its length, and the object's size (known
    /// after the first response).
    next_fetch: u64,
    next_len: u64,
    size: Option<u64>,
    /// Rows still wanted when the task has an exact count (a planned limit, a preview).
    rows_left: Option<u64>,
    /// 0-based number of the range's first line in the object, when known.
    first_line: Option<u64>,
    finished: bool,
}

impl LineReader {
    fn new(input: InputSpec, slice: TaskSlice, loc: Location) -> Self {
        let whole = slice.byte_end <= slice.byte_start;
        let (start, end) = if whole {
            (0, u64::MAX)
        } else {
            (slice.byte_start, slice.byte_end)
        };
        let split = RangeLines::new(start, end);
        let next_fetch = split.read_from();
        let next_len = if whole {
            u64::MAX
        } else {
            (end - next_fetch).saturating_add(TAIL_BYTES)
        };
        let first_line = (slice.row_count > 0 || start == 0).then_some(slice.row_start);
        LineReader {
            name: short_name(&slice.object_url).to_string(),
            rows_left: (slice.row_count > 0).then_some(slice.row_count),
            input,
            loc,
            split,
            body: None,
            next_fetch,
            next_len,
            size: None,
            first_line,
            finished: false,
            slice,
        }
    }

    async fn next_chunk(&mut self) -> Result<Option<Vec<SeedItem>>, SeedError> {
        loop {
            if self.finished || self.split.done() || self.rows_left == Some(0) {
                self.finished = true;
                return Ok(None);
            }
            let Some(body) = self.body.as_mut() else {
                if self.size.is_some_and(|size| self.next_fetch >= size) {
                    // The object ended inside the range's last line.
                    let mut lines = Vec::new();
                    self.split.finish(|l| lines.push(l));
                    self.finished = true;
                    let items = self.decode(lines);
                    return Ok((!items.is_empty()).then_some(items));
                }
                self.open().await?;
                continue;
            };
            match body.next().await {
                None => self.body = None,
                Some(bytes) => {
                    let bytes = bytes.map_err(|e| self.loc.store_error(e))?;
                    let mut lines = Vec::new();
                    self.split.feed(&bytes, |l| lines.push(l));
                    let items = self.decode(lines);
                    if !items.is_empty() {
                        return Ok(Some(items));
                    }
                }
            }
        }
    }

    /// Requests the next stretch of the object: the range (plus a tail) first, then ever
    /// longer tails until the last line ends.
    async fn open(&mut self) -> Result<(), SeedError> {
        let range = (self.next_len != u64::MAX || self.next_fetch > 0).then(|| {
            GetRange::Bounded(self.next_fetch..self.next_fetch.saturating_add(self.next_len))
        });
        let options = GetOptions {
            range,
            ..Default::default()
        };
        let got = self
            .loc
            .store
            .get_opts(&self.loc.path, options)
            .await
            .map_err(|e| self.loc.store_error(e))?;
        self.size = Some(got.meta.size);
        self.next_fetch = got.range.end;
        self.next_len = TAIL_BYTES.max(self.next_len.saturating_mul(2).min(64 * TAIL_BYTES));
        self.body = Some(got.into_stream());
        Ok(())
    }

    /// Rows of the owned lines (blank lines are skipped but counted for line numbers).
    fn decode(&mut self, lines: Vec<OwnedLine>) -> Vec<SeedItem> {
        let mut items = Vec::with_capacity(lines.len());
        for line in lines {
            if line.is_blank() {
                continue;
            }
            if let Some(left) = self.rows_left.as_mut() {
                if *left == 0 {
                    break;
                }
                *left -= 1;
            }
            let index = self.slice.global_row_start + line.offset;
            let source = match self.first_line {
                Some(first) => format!("{}:{}", self.name, first + line.line_in_range + 1),
                None => format!("{}@byte {}", self.name, line.offset),
            };
            items.push(decode_line(
                &self.input,
                self.slice.format,
                index,
                source,
                &line.bytes,
            ));
        }
        items
    }
}

/// One line as a seed row, or as a bad row saying why it is not one.
fn decode_line(
    input: &InputSpec,
    format: InputFormat,
    index: u64,
    source: String,
    line: &[u8],
) -> SeedItem {
    let text = match std::str::from_utf8(line) {
        Ok(t) => t,
        Err(e) => {
            let raw = String::from_utf8_lossy(line).into_owned();
            // Keep the row's own id where the rest of the line still parses.
            let id = serde_json::from_str::<Value>(&raw)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .map(|m| row_id(input, &m, index));
            return SeedItem::Bad(BadRow {
                index,
                id,
                error: format!(
                    "{source}: invalid UTF-8 at byte {} of the line",
                    e.valid_up_to()
                ),
                source,
                raw,
            });
        }
    };
    let text = text.strip_suffix('\r').unwrap_or(text);
    let columns = match format {
        InputFormat::Text => {
            let mut m = Map::new();
            m.insert(input.text_column.clone(), Value::String(text.to_string()));
            m
        }
        _ => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            Ok(other) => {
                return SeedItem::Bad(BadRow {
                    index,
                    id: None,
                    error: format!(
                        "{source}: expected a JSON object, found {}",
                        json_kind(&other)
                    ),
                    source,
                    raw: text.to_string(),
                })
            }
            Err(e) => {
                return SeedItem::Bad(BadRow {
                    index,
                    id: None,
                    error: format!("{source}: invalid JSON: {e}"),
                    source,
                    raw: text.to_string(),
                })
            }
        },
    };
    let id = row_id(input, &columns, index);
    SeedItem::Row(SeedRow {
        index,
        id,
        columns,
        source,
    })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Lines of a byte buffer without their `\n`; a final line without newline counts; a trailing
/// empty remainder does not. Empty lines in the middle are skipped by the planner too.
pub fn split_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && *l != b"\r")
}

#[cfg(test)]
#[path = "lines_tests.rs"]
mod tests;
