//! Replies with fewer choices than the request's `n`: some servers (llama.cpp, some proxies)
//! ignore `n` and answer one sample, others drop one now and then. Rather than turning every
//! such reply into failure rows, the missing samples are asked for once more, one request of
//! `n = 1` each (which every server honours); what is still missing after that is left to the
//! stage, which records one failure row per missing sample ("backend returned k of n choices").

use futures::future::join_all;

use super::{Backend, BackendError, GenRequest, GenResponse};

/// Spreads the seeds of top-up requests, so a server that honours `seed` does not answer the
/// same sample again.
const TOP_UP_SEED_STRIDE: u64 = 0x9e37_79b9_7f4a_7c15;

impl Backend {
    /// Sends `req` (with retries, see `generate_attempts`) and, when the reply has fewer
    /// choices than `n`, asks once more for each missing sample with `n = 1`. The response
    /// holds at least one choice, and at most `n`; fewer than `n` only when the top-up also came
    /// back short (the caller names the shortfall with [`Backend::shortfall`]).
    pub async fn generate(&self, req: &GenRequest) -> Result<GenResponse, BackendError> {
        let asked = asked(req);
        let mut resp = self.generate_attempts(req).await?;
        let got = resp.choices.len();
        if got >= asked {
            resp.choices.truncate(asked);
            return Ok(resp);
        }
        tracing::debug!(backend = %self.name, got, asked, "short reply; asking for the missing samples");
        let top_ups = (got..asked).map(|i| {
            let mut one = req.clone();
            one.n = Some(1);
            one.seed = req
                .seed
                .map(|s| s ^ (i as u64 + 1).wrapping_mul(TOP_UP_SEED_STRIDE));
            async move { self.generate_attempts(&one).await }
        });
        let mut slowest = 0;
        for r in join_all(top_ups).await {
            match r {
                Ok(extra) => {
                    slowest = slowest.max(extra.latency_ms);
                    resp.prompt_tokens += extra.prompt_tokens;
                    resp.completion_tokens += extra.completion_tokens;
                    resp.attempts += extra.attempts;
                    resp.choices.extend(extra.choices.into_iter().take(1));
                }
                Err(e) => {
                    tracing::debug!(backend = %self.name, error = %e, "top-up request failed")
                }
            }
        }
        resp.latency_ms += slowest;
        Ok(resp)
    }

    /// The error naming a reply of `got` choices for `asked` samples, as a failure row of each
    /// missing sample states it; `None` when nothing is missing.
    pub fn shortfall(&self, resp: &GenResponse, asked: u32) -> Option<BackendError> {
        let asked = asked.max(1) as usize;
        (resp.choices.len() < asked).then(|| BackendError::ShortReply {
            backend: self.name.clone(),
            endpoint: resp.endpoint.clone(),
            got: resp.choices.len(),
            asked,
        })
    }
}

/// Samples a request asks for (`n`, at least one).
fn asked(req: &GenRequest) -> usize {
    req.n.unwrap_or(1).max(1) as usize
}
