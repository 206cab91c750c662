//! Bounds on the work one job file may ask for, checked before anything runs.
//!
//! A job file comes from whoever may submit; without bounds a few bytes of YAML can exhaust a
//! parser's stack, a pipeline of hundreds of stages a worker's, and nested evolution rounds
//! multiply model calls per row. Template cost and prompt size are bounded where they are
//! spent (`template`, `backend`); this module holds the checks on the file and its shape.

/// Largest job file accepted, in bytes.
pub const MAX_SPEC_BYTES: usize = 1024 * 1024;
/// Deepest nesting of YAML collections (flow `[`/`{` or indented blocks) accepted.
pub const MAX_YAML_DEPTH: usize = 64;
/// Most stages in one pipeline.
pub const MAX_STAGES: usize = 32;
pub use crate::stages::config::MAX_ROUNDS;

/// Refuses a file too large or nested too deep, without parsing it: the YAML parser recurses
/// per level, so 100k nested `[` must be stopped before it sees them.
pub fn check_yaml_shape(text: &str) -> Result<(), String> {
    if text.len() > MAX_SPEC_BYTES {
        return Err(format!(
            "the job file is {} bytes; at most {MAX_SPEC_BYTES} are accepted",
            text.len()
        ));
    }
    let depth = max_nesting(text);
    if depth > MAX_YAML_DEPTH {
        return Err(format!(
            "the job file nests {depth} levels deep; at most {MAX_YAML_DEPTH} are accepted"
        ));
    }
    Ok(())
}

/// An upper estimate of the nesting depth: per line, its indentation level (one level per
/// indent step seen, block sequences' `- ` included) plus the flow brackets open outside
/// quoted strings and comments, carried across lines.
fn max_nesting(text: &str) -> usize {
    let mut flow = 0usize;
    let mut max = 0usize;
    for line in text.lines() {
        let indent = line.len() - line.trim_start_matches([' ', '-']).len();
        let block = indent.div_ceil(2);
        let (mut single, mut double) = (false, false);
        let mut prev = ' ';
        for c in line.chars() {
            match c {
                '\'' if !double => single = !single,
                '"' if !single && prev != '\\' => double = !double,
                '#' if !single && !double && (prev == ' ' || prev == '\t') => break,
                '[' | '{' if !single && !double => {
                    flow += 1;
                    max = max.max(block + flow);
                }
                ']' | '}' if !single && !double => flow = flow.saturating_sub(1),
                _ => {}
            }
            prev = c;
        }
        max = max.max(block + flow);
    }
    max
}

/// Normalises a local output path or an object-store URL's path (`.` and repeated `/`
/// removed) and refuses one that climbs with `..`: a job writes under the prefix it names.
pub fn normalise_output_path(path: &str) -> Result<String, String> {
    let (scheme, rest) = match path.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, path),
    };
    let absolute = rest.starts_with('/');
    let mut parts = Vec::new();
    for part in rest.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("`{path}` climbs out of its prefix with `..`")),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(format!("`{path}` names no location"));
    }
    let joined = parts.join("/");
    Ok(match scheme {
        Some(s) if absolute => format!("{s}:///{joined}"),
        Some(s) => format!("{s}://{joined}"),
        None if absolute => format!("/{joined}"),
        None => joined,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_refused_fast() {
        let deep = format!("name: {}", "[".repeat(100_000));
        let started = std::time::Instant::now();
        let e = check_yaml_shape(&deep).unwrap_err();
        assert!(e.contains("nests") && e.contains("64"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let mut block = String::new();
        for i in 0..80 {
            block.push_str(&format!("{}k{i}:\n", "  ".repeat(i)));
        }
        assert!(check_yaml_shape(&block).is_err());
    }

    #[test]
    fn ordinary_files_pass_and_brackets_in_strings_do_not_count() {
        let text = "name: t\npipeline:\n  - {stage: generate, template: \"[[[[{{ text }}\"}\n  - {a: [1, [2, {b: 3}]]}  # [[[[\n";
        assert_eq!(check_yaml_shape(text), Ok(()));
        assert!(max_nesting(text) < 8, "{}", max_nesting(text));
    }

    #[test]
    fn oversized_file_is_refused() {
        let e = check_yaml_shape(&"#".repeat(MAX_SPEC_BYTES + 1)).unwrap_err();
        assert!(e.contains("bytes"), "{e}");
    }

    #[test]
    fn output_paths_are_normalised_and_never_climb() {
        assert_eq!(
            normalise_output_path("/tmp//out/./x/").unwrap(),
            "/tmp/out/x"
        );
        assert_eq!(normalise_output_path("out/x").unwrap(), "out/x");
        assert_eq!(
            normalise_output_path("s3://bucket//jobs/./a").unwrap(),
            "s3://bucket/jobs/a"
        );
        assert_eq!(
            normalise_output_path("file:///tmp/out/").unwrap(),
            "file:///tmp/out"
        );
        for bad in [
            "/data/../etc",
            "s3://bucket/jobs/../other",
            "..",
            "/",
            "s3://",
        ] {
            assert!(normalise_output_path(bad).is_err(), "{bad}");
        }
    }
}
