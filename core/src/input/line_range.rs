//! Which lines a byte range of a line-format object owns, decided from the bytes alone so that
//! planning never has to read the object.
//!
//! The rule: the range `[start, end)` owns every line that *starts* in it. A reader of the
//! range therefore begins at `start - 1` (when `start > 0`) and drops the bytes up to and
//! including the first `\n` at or after it — a line beginning exactly at `start` has its
//! predecessor's `\n` at `start - 1` and is kept — and reads past `end` to finish its last
//! line. Consecutive ranges that tile an object thus see every line exactly once, whatever the
//! cut points: a cut inside a line gives the line to the range where it starts, and a range
//! shorter than a line may own no line at all.
//!
//! [`RangeLines`] applies the rule to bytes fed in arbitrary chunks, keeping only the line
//! being assembled, so a task's memory does not grow with its range.

/// One line owned by the range: its first byte's offset in the object, its number among the
/// range's lines (0-based, empty lines included), and its bytes without the `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedLine {
    pub offset: u64,
    pub line_in_range: u64,
    pub bytes: Vec<u8>,
}

impl OwnedLine {
    /// Empty lines (and `\r`-only ones, from CRLF files) are not rows.
    pub fn is_blank(&self) -> bool {
        self.bytes.is_empty() || self.bytes == b"\r"
    }
}

/// Splits the bytes of `[start, end)` (and past `end`, up to the end of its last line) into
/// the lines the range owns. Feed it the object's bytes from [`RangeLines::read_from`] on.
#[derive(Debug)]
pub struct RangeLines {
    end: u64,
    /// Object offset of the next byte fed.
    pos: u64,
    /// Still dropping the tail of a line owned by the range before.
    skipping: bool,
    /// Offset where the line being assembled starts.
    line_start: u64,
    line: Vec<u8>,
    lines_seen: u64,
    done: bool,
}

impl RangeLines {
    /// A splitter for `[start, end)`; `end` of `u64::MAX` reads to the end of the object.
    pub fn new(start: u64, end: u64) -> Self {
        RangeLines {
            end,
            pos: start.saturating_sub(1),
            skipping: start > 0,
            line_start: start,
            line: Vec::new(),
            lines_seen: 0,
            done: start >= end,
        }
    }

    /// The object offset the bytes must be fed from: one before the range, to see whether a
    /// line starts exactly at its first byte.
    pub fn read_from(&self) -> u64 {
        self.pos
    }

    /// True once the range's last line is complete: no more bytes are needed.
    pub fn done(&self) -> bool {
        self.done
    }

    /// Feeds the next bytes of the object; calls `emit` for every completed owned line.
    /// Bytes after the last owned line are ignored.
    pub fn feed(&mut self, mut bytes: &[u8], mut emit: impl FnMut(OwnedLine)) {
        while !self.done && !bytes.is_empty() {
            let newline = bytes.iter().position(|b| *b == b'\n');
            let take = newline.map_or(bytes.len(), |i| i + 1);
            let (head, rest) = bytes.split_at(take);
            if self.skipping {
                if newline.is_some() {
                    self.skipping = false;
                    self.line_start = self.pos + take as u64;
                    self.done = self.line_start >= self.end;
                }
            } else if newline.is_some() {
                self.line.extend_from_slice(&head[..head.len() - 1]);
                self.emit_line(&mut emit);
                self.line_start = self.pos + take as u64;
                self.done = self.line_start >= self.end;
            } else {
                self.line.extend_from_slice(head);
            }
            self.pos += take as u64;
            bytes = rest;
        }
    }

    /// The object ended: a last line without `\n` that the range owns is emitted.
    pub fn finish(&mut self, emit: impl FnOnce(OwnedLine)) {
        if !self.done && !self.skipping && !self.line.is_empty() {
            let mut emit = Some(emit);
            self.emit_line(&mut |l| (emit.take().expect("one last line"))(l));
        }
        self.done = true;
    }

    fn emit_line(&mut self, emit: &mut impl FnMut(OwnedLine)) {
        emit(OwnedLine {
            offset: self.line_start,
            line_in_range: self.lines_seen,
            bytes: std::mem::take(&mut self.line),
        });
        self.lines_seen += 1;
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Every line (with its offset) the ranges `cuts` own, feeding `chunk`-byte pieces.
    fn read_all(data: &[u8], cuts: &[u64], chunk: usize) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        for w in cuts.windows(2) {
            let mut r = RangeLines::new(w[0], w[1]);
            let mut at = r.read_from() as usize;
            while !r.done() && at < data.len() {
                let next = (at + chunk).min(data.len());
                r.feed(&data[at..next], |l| out.push((l.offset, l.bytes)));
                at = next;
            }
            r.finish(|l| out.push((l.offset, l.bytes)));
        }
        out
    }

    /// The lines of `data` as a whole-object split sees them: (offset, bytes).
    fn expected(data: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut start = 0usize;
        for (i, b) in data.iter().enumerate() {
            if *b == b'\n' {
                out.push((start as u64, data[start..i].to_vec()));
                start = i + 1;
            }
        }
        if start < data.len() {
            out.push((start as u64, data[start..].to_vec()));
        }
        out
    }

    fn check(data: &[u8], cuts: &[u64], chunk: usize) {
        assert_eq!(
            read_all(data, cuts, chunk),
            expected(data),
            "cuts {cuts:?}, chunk {chunk}, data {:?}",
            String::from_utf8_lossy(data)
        );
    }

    #[test]
    fn a_line_starting_exactly_at_the_cut_belongs_to_the_range_after_it() {
        let data = b"ab\ncd\nef\n";
        check(data, &[0, 3, 9], 4);
        let mut r = RangeLines::new(3, 6);
        assert_eq!(r.read_from(), 2);
        let mut got = Vec::new();
        r.feed(&data[2..], |l| got.push((l.offset, l.bytes)));
        assert_eq!(got, vec![(3, b"cd".to_vec())]);
        assert!(r.done());
    }

    #[test]
    fn crlf_empty_lines_and_a_missing_final_newline() {
        let data = b"a\r\n\r\n\nbb\r\n\n\ncc";
        for cut in 0..=data.len() as u64 {
            check(data, &[0, cut, data.len() as u64], 1);
            check(data, &[0, cut, data.len() as u64], 5);
        }
        let lines = read_all(data, &[0, data.len() as u64], 3);
        let blank = lines
            .iter()
            .filter(|(o, b)| {
                OwnedLine {
                    offset: *o,
                    line_in_range: 0,
                    bytes: b.clone(),
                }
                .is_blank()
            })
            .count();
        assert_eq!((lines.len(), blank), (7, 4));
        assert_eq!(lines.last().unwrap(), &(12, b"cc".to_vec()));
    }

    #[test]
    fn a_line_longer_than_its_range_and_ranges_smaller_than_a_line() {
        let long = "x".repeat(100);
        let data = format!("{long}\nshort\n{long}");
        let n = data.len() as u64;
        // Ten-byte ranges: most own nothing, the one holding each line's start owns it.
        let cuts: Vec<u64> = (0..n).step_by(10).chain([n]).collect();
        check(data.as_bytes(), &cuts, 7);
        // One-byte ranges.
        let cuts: Vec<u64> = (0..=n).collect();
        check(data.as_bytes(), &cuts, 64);
        let mut r = RangeLines::new(20, 30);
        let mut got = 0;
        r.feed(&data.as_bytes()[19..], |_| got += 1);
        assert_eq!(got, 0, "no line starts in [20, 30)");
        assert!(r.done());
    }

    #[test]
    fn empty_ranges_and_objects_own_nothing() {
        assert!(RangeLines::new(5, 5).done());
        check(b"", &[0, 0], 1);
        check(b"\n", &[0, 1], 1);
        check(b"abc", &[0, 3], 2);
    }

    #[test]
    fn every_line_is_read_exactly_once_for_many_random_splits() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        for _ in 0..400 {
            let len = rng.random_range(0..200usize);
            let data: Vec<u8> = (0..len)
                .map(|_| match rng.random_range(0..10) {
                    0..=1 => b'\n',
                    2 => b'\r',
                    _ => b'a' + rng.random_range(0..26u8),
                })
                .collect();
            let pieces = rng.random_range(1..12usize);
            let mut cuts: Vec<u64> = (0..pieces - 1)
                .map(|_| rng.random_range(0..=len as u64))
                .collect();
            cuts.push(0);
            cuts.push(len as u64);
            cuts.sort();
            let chunk = rng.random_range(1..40usize);
            check(&data, &cuts, chunk);
        }
    }
}
