//! Listing what a backend's endpoints serve (`GET /v1/models`), for `synthforge validate
//! --check-backends`: a wrong model name or a down server shows before a job runs, not as a
//! failure per row.

use std::time::Duration;

use super::openai::WireModels;
use super::Backend;

/// What one endpoint said about its models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServedModels {
    /// The endpoint listed these model ids.
    Listed(Vec<String>),
    /// The endpoint answered but cannot list models (older servers lack `/v1/models`).
    Unlisted { status: u16 },
    /// The endpoint could not be reached or its answer was not a model list.
    Unreachable(String),
}

/// One endpoint (its URL with any credentials in it masked) and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointModels {
    pub endpoint: String,
    pub served: ServedModels,
}

impl Backend {
    /// Asks every endpoint for its models, with the backend's API key, within `timeout` each.
    pub async fn served_models(&self, timeout: Duration) -> Vec<EndpointModels> {
        let mut out = Vec::new();
        for base in self.pool.urls() {
            let endpoint = crate::redact::mask_text(&base);
            let sent = self
                .authed(self.http.get(format!("{base}/models")))
                .timeout(timeout)
                .send()
                .await;
            let served = match sent {
                Err(e) => ServedModels::Unreachable(crate::redact::mask_text(
                    &self.transport(&base, &e).to_string(),
                )),
                Ok(resp) if !resp.status().is_success() => ServedModels::Unlisted {
                    status: resp.status().as_u16(),
                },
                Ok(resp) => match resp.json::<WireModels>().await {
                    Ok(m) => ServedModels::Listed(m.data.into_iter().map(|m| m.id).collect()),
                    Err(e) => ServedModels::Unreachable(crate::redact::mask_text(
                        &self.transport(&base, &e).to_string(),
                    )),
                },
            };
            out.push(EndpointModels { endpoint, served });
        }
        out
    }
}
