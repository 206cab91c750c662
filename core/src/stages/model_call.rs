//! The settings every model-calling stage shares (backend, system prompt, sampling, structured
//! output), declared once by [`model_call_config!`].
//!
//! serde's `deny_unknown_fields` does not work together with `flatten`, so the shared fields
//! cannot live in a nested struct; the macro writes them into each stage's configuration
//! instead, which keeps unknown-key errors exact (key name and line) for every stage.

use serde_json::Value;

/// The shared settings of one model-calling stage, for building requests and lineage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelCall {
    /// Name of an entry in `backends`.
    pub backend: String,
    pub system_prompt: Option<String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// Samples per row (`n` of the request).
    pub samples: Option<u32>,
    pub stop: Option<Vec<String>>,
    /// Passed to the backend as is (e.g. a JSON schema), where it supports structured output.
    pub response_format: Option<Value>,
}

impl ModelCall {
    /// Samples per row, at least one.
    pub fn samples(&self) -> u32 {
        self.samples.unwrap_or(1).max(1)
    }
}

/// Declares a model-calling stage's configuration: the given struct with the [`ModelCall`]
/// fields added (`backend` required, the rest optional), `deny_unknown_fields`, and a
/// `model_call()` accessor.
macro_rules! model_call_config {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Name of an entry in `backends`.
            pub backend: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub system_prompt: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub max_tokens: Option<u32>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub temperature: Option<f32>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub top_p: Option<f32>,
            /// Samples per row.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub samples: Option<u32>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub stop: Option<Vec<String>>,
            /// Structured output request passed to the backend as is.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub response_format: Option<serde_json::Value>,
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $name {
            /// The shared model-call settings.
            pub fn model_call(&self) -> $crate::stages::model_call::ModelCall {
                $crate::stages::model_call::ModelCall {
                    backend: self.backend.clone(),
                    system_prompt: self.system_prompt.clone(),
                    max_tokens: self.max_tokens,
                    temperature: self.temperature,
                    top_p: self.top_p,
                    samples: self.samples,
                    stop: self.stop.clone(),
                    response_format: self.response_format.clone(),
                }
            }
        }
    };
}

pub(crate) use model_call_config;
