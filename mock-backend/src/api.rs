//! OpenAI wire types: the subset of request fields the mock understands and
//! the response bodies it sends.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Body of POST /v1/chat/completions and POST /v1/completions (one type for
/// both: `messages` is read by the first, `prompt` by the second). Unknown
/// fields are ignored, and `temperature` / `top_p` are accepted but have no
/// effect: the output depends only on model, prompt, sample index and seed.
#[derive(Debug, Deserialize)]
pub struct InferenceRequest {
    /// Model name; must be one of `--models`.
    pub model: String,
    /// Chat messages (chat endpoint).
    pub messages: Option<Vec<Message>>,
    /// Prompt or list of prompts (completions endpoint).
    pub prompt: Option<StringOrList>,
    /// Completion length limit.
    pub max_tokens: Option<u64>,
    /// Newer name of `max_tokens`; wins when both are set.
    pub max_completion_tokens: Option<u64>,
    /// Samples per prompt.
    pub n: Option<u32>,
    /// Stop sequence(s).
    pub stop: Option<StringOrList>,
    /// Per-request text seed (any JSON integer).
    pub seed: Option<serde_json::Number>,
    /// `{"type": "text" | "json_object" | "json_schema", "json_schema": {...}}`.
    pub response_format: Option<ResponseFormat>,
}

impl InferenceRequest {
    /// The request's seed as 64 bits (negative seeds wrap), if any.
    pub fn seed_u64(&self) -> Option<u64> {
        let n = self.seed.as_ref()?;
        n.as_u64()
            .or_else(|| n.as_i64().map(|i| i as u64))
            .or_else(|| n.as_f64().map(|f| f as i64 as u64))
    }
}

/// A chat message; only `role` and the text of `content` matter here.
#[derive(Debug, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant`, ...
    #[serde(default)]
    pub role: String,
    /// Text of the content (string, or the `text` of content parts).
    #[serde(default)]
    pub content: Content,
}

/// Message content flattened to text: a plain string, or the `text` fields of
/// an array of content parts joined by newlines; `null` is empty.
#[derive(Debug, Default)]
pub struct Content(pub String);

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Content;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, an array of content parts or null")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Content, E> {
                Ok(Content(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Content, E> {
                Ok(Content(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Content, E> {
                Ok(Content::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Content, E> {
                Ok(Content::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
                #[derive(Deserialize)]
                struct Part {
                    text: Option<String>,
                }
                let mut out = String::new();
                while let Some(part) = seq.next_element::<Part>()? {
                    if let Some(t) = part.text {
                        if !out.is_empty() {
                            out.push('\n');
                        }
                        out.push_str(&t);
                    }
                }
                Ok(Content(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A string or a list of strings (`prompt`, `stop`).
#[derive(Debug, Default)]
pub struct StringOrList(pub Vec<String>);

impl<'de> Deserialize<'de> for StringOrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringOrList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringOrList, E> {
                Ok(StringOrList(vec![v.to_owned()]))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<StringOrList, E> {
                Ok(StringOrList(vec![v]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringOrList, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(StringOrList(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Requested output format.
#[derive(Debug, Deserialize)]
pub struct ResponseFormat {
    /// `text`, `json_object` or `json_schema`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Present for `json_schema`.
    pub json_schema: Option<JsonSchemaSpec>,
}

/// The `json_schema` member of `response_format`.
#[derive(Debug, Deserialize)]
pub struct JsonSchemaSpec {
    /// The JSON Schema the reply must follow.
    pub schema: Option<Value>,
}

/// `usage` of a response.
#[derive(Debug, Serialize)]
pub struct Usage {
    /// Words in the prompt(s).
    pub prompt_tokens: u64,
    /// Words generated over all choices.
    pub completion_tokens: u64,
    /// Sum of both.
    pub total_tokens: u64,
    /// Prompt tokens served from the prefix cache, as OpenAI and vLLM report them (only
    /// with `--prefix-cache-blocks`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Serialize)]
pub struct PromptTokensDetails {
    pub cached_tokens: u64,
}

/// Response of POST /v1/chat/completions.
#[derive(Debug, Serialize)]
pub struct ChatCompletion<'a> {
    /// Unique id.
    pub id: String,
    /// Always `chat.completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// Model as requested.
    pub model: &'a str,
    /// One per sample.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    pub usage: Usage,
}

/// A chat choice.
#[derive(Debug, Serialize)]
pub struct ChatChoice {
    /// Position in `choices`.
    pub index: u32,
    /// The generated assistant message.
    pub message: AssistantMessage,
    /// Always null (logprobs are not modelled).
    pub logprobs: Option<()>,
    /// `stop` or `length`.
    pub finish_reason: &'static str,
}

/// `{"role": "assistant", "content": ...}`.
#[derive(Debug, Serialize)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: &'static str,
    /// Generated text.
    pub content: String,
}

/// Response of POST /v1/completions.
#[derive(Debug, Serialize)]
pub struct TextCompletion<'a> {
    /// Unique id.
    pub id: String,
    /// Always `text_completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// Model as requested.
    pub model: &'a str,
    /// One per prompt and sample (`index = prompt_index * n + sample`).
    pub choices: Vec<TextChoice>,
    /// Token counts.
    pub usage: Usage,
}

/// A text completion choice.
#[derive(Debug, Serialize)]
pub struct TextChoice {
    /// Position in `choices`.
    pub index: u32,
    /// Generated text.
    pub text: String,
    /// Always null.
    pub logprobs: Option<()>,
    /// `stop` or `length`.
    pub finish_reason: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_variants() {
        let r: InferenceRequest = serde_json::from_str(
            r#"{"model":"m","messages":[{"role":"system","content":null},
                {"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url"},{"type":"text","text":"b"}]}],
                "stop":"x","seed":-1,"temperature":0.7,"extra":{"k":1}}"#,
        )
        .unwrap();
        let msgs = r.messages.as_ref().unwrap();
        assert_eq!(msgs[0].content.0, "");
        assert_eq!(msgs[1].content.0, "a\nb");
        assert_eq!(r.stop.as_ref().unwrap().0, vec!["x".to_string()]);
        assert_eq!(r.seed_u64(), Some(u64::MAX));
        let r: InferenceRequest =
            serde_json::from_str(r#"{"model":"m","prompt":["p","q"],"stop":["a","b"]}"#).unwrap();
        assert_eq!(r.prompt.unwrap().0.len(), 2);
        assert!(serde_json::from_str::<InferenceRequest>(r#"{"model":"m","n":-1}"#).is_err());
    }
}
