//! Replies for `response_format` = `json_object` / `json_schema`.
//!
//! Structured-output stages parse the model's reply as JSON, so in JSON mode
//! the mock always answers a valid JSON object, shaped after the schema's
//! properties when a schema is given.

use serde_json::{Map, Value};

use crate::text::{prose, SplitMix64};

/// Deepest nesting filled in; deeper object schemas become `{}`.
const MAX_DEPTH: usize = 4;

/// A JSON object reply for `json_object` mode: `{"response": "<prose>"}`.
pub fn json_object(rng: &mut SplitMix64, words: u64) -> String {
    let mut m = Map::new();
    m.insert(
        "response".into(),
        Value::String(prose(rng.next_u64(), words.max(1))),
    );
    Value::Object(m).to_string()
}

/// A JSON object reply filling `schema`'s properties with values of the
/// declared types. A schema that is not an object schema yields
/// [`json_object`]'s shape, so the reply is always a JSON object.
pub fn from_schema(rng: &mut SplitMix64, schema: &Value, words: u64) -> String {
    match value_for(rng, schema, 0) {
        v @ Value::Object(_) if schema.get("properties").is_some() => v.to_string(),
        _ => json_object(rng, words),
    }
}

fn schema_type(schema: &Value) -> Option<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => Some(t),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    }
}

fn value_for(rng: &mut SplitMix64, schema: &Value, depth: usize) -> Value {
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(Value::Array(options)) = schema.get("enum") {
        if !options.is_empty() {
            return options[(rng.next_u64() % options.len() as u64) as usize].clone();
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(alts)) = schema.get(key) {
            if let Some(first) = alts.iter().find(|a| schema_type(a) != Some("null")) {
                return value_for(rng, first, depth);
            }
        }
    }
    let kind = schema_type(schema).or_else(|| {
        schema
            .get("properties")
            .map(|_| "object")
            .or_else(|| schema.get("items").map(|_| "array"))
    });
    match kind {
        Some("integer") => {
            let lo = schema.get("minimum").and_then(Value::as_i64).unwrap_or(0);
            let hi = schema
                .get("maximum")
                .and_then(Value::as_i64)
                .unwrap_or(lo.saturating_add(100))
                .max(lo);
            let span = (hi as i128 - lo as i128 + 1) as u128;
            Value::from((lo as i128 + (u128::from(rng.next_u64()) % span) as i128) as i64)
        }
        Some("number") => {
            let lo = schema.get("minimum").and_then(Value::as_f64).unwrap_or(0.0);
            let hi = schema
                .get("maximum")
                .and_then(Value::as_f64)
                .unwrap_or(lo + 1.0)
                .max(lo);
            let x = lo + rng.unit_f64() * (hi - lo);
            Value::from((x * 100.0).round() / 100.0)
        }
        Some("boolean") => Value::Bool(rng.next_u64() & 1 == 0),
        Some("null") => Value::Null,
        Some("array") => {
            let items = schema.get("items").cloned().unwrap_or(Value::Null);
            let n = rng.range(1, 3);
            Value::Array(
                (0..n)
                    .map(|_| {
                        if depth >= MAX_DEPTH {
                            Value::Null
                        } else {
                            value_for(rng, &items, depth + 1)
                        }
                    })
                    .collect(),
            )
        }
        Some("object") => {
            let mut m = Map::new();
            if depth < MAX_DEPTH {
                if let Some(Value::Object(props)) = schema.get("properties") {
                    for (k, sub) in props {
                        m.insert(k.clone(), value_for(rng, sub, depth + 1));
                    }
                }
            }
            Value::Object(m)
        }
        // "string", missing or unknown types: a short phrase.
        _ => {
            let words = rng.range(3, 8);
            Value::String(prose(rng.next_u64(), words))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fills_schema_properties() {
        let schema = json!({
            "type": "object",
            "properties": {
                "score": {"type": "integer", "minimum": 1, "maximum": 5},
                "reason": {"type": "string"},
                "ok": {"type": "boolean"},
                "p": {"type": "number"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "kind": {"enum": ["x", "y"]},
                "inner": {"type": "object", "properties": {"n": {"type": ["integer", "null"]}}}
            },
            "required": ["score"]
        });
        let s = from_schema(&mut SplitMix64::new(7), &schema, 10);
        let v: Value = serde_json::from_str(&s).unwrap();
        let score = v["score"].as_i64().unwrap();
        assert!((1..=5).contains(&score));
        assert!(v["reason"].is_string());
        assert!(v["ok"].is_boolean());
        assert!(v["p"].is_f64());
        assert!(!v["tags"].as_array().unwrap().is_empty());
        assert!(v["kind"] == "x" || v["kind"] == "y");
        assert!(v["inner"]["n"].is_i64());
    }

    #[test]
    fn non_object_schema_still_gives_object() {
        let s = from_schema(&mut SplitMix64::new(1), &json!({"type": "string"}), 5);
        assert!(serde_json::from_str::<Value>(&s).unwrap().is_object());
        let s = json_object(&mut SplitMix64::new(1), 5);
        assert!(serde_json::from_str::<Value>(&s).unwrap()["response"].is_string());
    }
}
