//! OpenAI-compatible wire types: `/v1/chat/completions` and `/v1/completions`.
//!
//! Only the fields synthforge uses are modelled; servers (vLLM, SGLang, TGI, llama.cpp, Ollama,
//! hosted APIs) add more, which serde ignores.

use serde::{Deserialize, Serialize};

use crate::record::ChatMessage;

/// What a stage asks of a backend, independent of chat vs completions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenRequest {
    /// Chat turns (chat API). For the completions API they are flattened into a prompt.
    pub messages: Vec<ChatMessage>,
    /// Raw prompt (completions API); for the chat API it becomes one user message.
    pub prompt: Option<String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub n: Option<u32>,
    pub stop: Option<Vec<String>>,
    pub seed: Option<u64>,
    /// `{"type":"json_object"}` or `{"type":"json_schema","json_schema":{...}}`.
    pub response_format: Option<serde_json::Value>,
}

impl GenRequest {
    /// The prompt text as the completions API sees it.
    pub fn prompt_text(&self) -> String {
        if let Some(p) = &self.prompt {
            return p.clone();
        }
        let mut out = String::new();
        for m in &self.messages {
            if !out.is_empty() {
                out.push_str("\n\n");
            }
            out.push_str(&m.content);
        }
        out
    }

    /// The chat messages as the chat API sees them.
    pub fn chat_messages(&self) -> Vec<ChatMessage> {
        if self.messages.is_empty() {
            vec![ChatMessage::new(
                "user",
                self.prompt.clone().unwrap_or_default(),
            )]
        } else {
            self.messages.clone()
        }
    }
}

/// One sample of a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenChoice {
    pub text: String,
    pub finish_reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenResponse {
    pub choices: Vec<GenChoice>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Model name reported by the server.
    pub model: String,
    /// Wall time of the successful attempt, queueing at the server included.
    pub latency_ms: u64,
    /// Attempts it took (1 = first try).
    pub attempts: u32,
    pub endpoint: String,
}

#[derive(Serialize)]
pub(crate) struct ChatBody<'a> {
    pub model: &'a str,
    pub messages: Vec<ChatMessage>,
    #[serde(flatten)]
    pub common: CommonParams<'a>,
}

#[derive(Serialize)]
pub(crate) struct CompletionBody<'a> {
    pub model: &'a str,
    pub prompt: String,
    #[serde(flatten)]
    pub common: CommonParams<'a>,
}

#[derive(Serialize)]
pub(crate) struct CommonParams<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<&'a serde_json::Value>,
}

#[derive(Deserialize)]
pub(crate) struct WireResponse {
    #[serde(default)]
    pub model: String,
    pub choices: Vec<WireChoice>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
}

#[derive(Deserialize)]
pub(crate) struct WireChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub message: Option<WireMessage>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct WireMessage {
    #[serde(default)]
    pub content: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

#[derive(Deserialize)]
pub(crate) struct WireModels {
    pub data: Vec<WireModel>,
}

#[derive(Deserialize)]
pub(crate) struct WireModel {
    pub id: String,
}
