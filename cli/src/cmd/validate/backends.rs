//! `--check-backends`: ask every endpoint of every backend what it serves (`GET /v1/models`),
//! list it, and warn when the job's model is not among them, so a misspelt model name or a
//! down server shows before the job runs rather than as a failure per row.

use std::sync::Arc;
use std::time::Duration;

use synthforge_core::backend::models::ServedModels;
use synthforge_core::backend::{Backend, Credentials};
use synthforge_core::spec::JobSpec;

use super::Findings;

/// How long one endpoint may take to list its models.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// Lists each backend's models and records what is wrong. A backend naming a `credential`
/// sends that key when `credentials` has it (`--credential` as on the workers).
pub async fn check(spec: &JobSpec, credentials: &Arc<Credentials>, findings: &mut Findings) {
    for (name, b) in &spec.backends {
        let field = format!("backends.{name}");
        let backend = match Backend::with_credentials(name, b, credentials) {
            Ok(backend) => backend,
            Err(e) => {
                // Without the key the listing would be refused: say why, then try without it.
                findings.warning(format!("{e}; listing its models without a key"));
                let mut keyless = b.clone();
                keyless.credential = None;
                match Backend::new(name, &keyless) {
                    Ok(backend) => backend,
                    Err(e) => {
                        findings.problem(&field, e.to_string());
                        continue;
                    }
                }
            }
        };
        for ep in backend.served_models(LIST_TIMEOUT).await {
            match ep.served {
                ServedModels::Listed(models) => {
                    println!(
                        "backend `{name}` at {}: serves {}",
                        ep.endpoint,
                        if models.is_empty() {
                            "no models".to_string()
                        } else {
                            models.join(", ")
                        }
                    );
                    if !models.iter().any(|m| m == &b.model) {
                        findings.warning(format!(
                            "{field}.model: `{}` is not served by {}; {}",
                            b.model,
                            ep.endpoint,
                            synthforge_core::suggest::hint(&b.model, &models)
                        ));
                    }
                }
                ServedModels::Unlisted { status } => findings.warning(format!(
                    "backend `{name}` at {}: cannot list models (HTTP {status}); model `{}` \
                     not checked",
                    ep.endpoint, b.model
                )),
                ServedModels::Unreachable(why) => {
                    findings.problem(&field, format!("{} is unreachable: {why}", ep.endpoint))
                }
            }
        }
    }
}
