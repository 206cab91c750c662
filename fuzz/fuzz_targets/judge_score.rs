//! A judge's reply → `judge_parse::parse`: an accepted score is finite and on the scale.
#![no_main]

use libfuzzer_sys::fuzz_target;
use synthforge_core::stages::judge_parse;

/// Scales a judge config can name (`scale: [min, max]`), including odd but valid ones.
const SCALES: &[(f64, f64)] = &[(1.0, 10.0), (1.0, 5.0), (0.0, 1.0), (0.0, 100.0), (-5.0, 5.0)];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, reply)) = data.split_first() else {
        return;
    };
    let Ok(reply) = std::str::from_utf8(reply) else {
        return;
    };
    let (min, max) = SCALES[pick as usize % SCALES.len()];
    if let Ok(v) = judge_parse::parse(reply, min, max) {
        assert!(
            v.score.is_finite() && v.score >= min && v.score <= max,
            "score {} accepted outside {min}..={max}",
            v.score
        );
    }
});
