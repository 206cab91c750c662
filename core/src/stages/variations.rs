//! Cosmopedia-style variations: per row, one choice from each list (audience, format, style…),
//! drawn deterministically from the job seed and the row index, so the same job gives the same
//! prompts on any worker and on any retry.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// Named lists to draw from, in a stable (sorted) order.
pub type Variations = BTreeMap<String, Vec<String>>;

/// Parses the `variations` stage parameter: a map of name → list of strings.
pub fn parse(value: Option<&serde_json::Value>) -> Result<Variations, String> {
    let Some(v) = value else {
        return Ok(Variations::new());
    };
    let obj = v
        .as_object()
        .ok_or("`variations` must be a map of name: [choices]")?;
    let mut out = Variations::new();
    for (k, list) in obj {
        let arr = list
            .as_array()
            .ok_or(format!("`variations.{k}` must be a list"))?;
        if arr.is_empty() {
            return Err(format!("`variations.{k}` must not be empty"));
        }
        let items = arr
            .iter()
            .map(|x| match x {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        out.insert(k.clone(), items);
    }
    Ok(out)
}

/// Reads `variations` from a job file (through [`parse`], so non-string choices become text).
pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Variations, D::Error> {
    let value = <serde_json::Value as serde::Deserialize>::deserialize(d)?;
    parse(Some(&value)).map_err(serde::de::Error::custom)
}

/// Draws one value per list for a row (and sample).
pub fn choose(
    vars: &Variations,
    job_seed: u64,
    row_index: u64,
    sample: u32,
) -> BTreeMap<String, String> {
    vars.iter()
        .map(|(name, choices)| {
            let mut h = Sha256::new();
            h.update(job_seed.to_le_bytes());
            h.update(row_index.to_le_bytes());
            h.update(sample.to_le_bytes());
            h.update(name.as_bytes());
            let d = h.finalize();
            let n = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
            (
                name.clone(),
                choices[(n % choices.len() as u64) as usize].clone(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deterministic_and_covering() {
        let v = parse(Some(
            &json!({"audience": ["a", "b", "c"], "format": ["x", "y"]}),
        ))
        .unwrap();
        assert_eq!(choose(&v, 1, 5, 0), choose(&v, 1, 5, 0));
        let mut seen = std::collections::HashSet::new();
        for row in 0..200 {
            seen.insert(choose(&v, 1, row, 0)["audience"].clone());
        }
        assert_eq!(seen.len(), 3);
        assert!(parse(Some(&json!({"audience": []}))).is_err());
    }
}
