//! `pii`: planted personal data never reaches the backend (the mock records every request) nor
//! the output (rows and failures), the model's own PII is redacted after generation, and the
//! redactions are counted per type in the dataset card.

mod stages_common;

use stages_common::*;
use synthforge_tests::*;

const PLANTED: &[&str] = &[
    "jane.roe@example.com",
    "(555) 123-4567",
    "4111 1111 1111 1111",
    "123-45-6789",
    "192.168.10.42",
    "AB 12 34 56 C",
    "+44 20 7946 0958",
    "2001:db8::8a2e:370:7334",
    "ops@acme-corp.co.uk",
    "DE89 3704 0044 0532 0130 00",
    "john at example dot com",
];
/// Look-alikes that must reach the backend and the output unchanged.
const DECOYS: &[&str] = &["978-0-306-40615-7", "Section 4.2.1.3"];
const MODEL_LEAK: &[&str] = &["leaked.person@example.net", "(555) 987-6543"];

#[test]
fn planted_pii_never_reaches_backend_nor_output() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules(
        dir.path(),
        serde_json::json!([{"contains": "ECHO-ME",
            "reply": "Sure, write to leaked.person@example.net or call (555) 987-6543 today."}]),
    );
    let mock = MockBackend::start(&["--record", "--reply-rules", rules.to_str().unwrap()]);
    let texts = [
        "Customer jane.roe@example.com says the order is late.",
        "Call me back on (555) 123-4567 please.",
        "Refund card 4111 1111 1111 1111 twice.",
        "My SSN 123-45-6789 is rejected.",
        "Server 192.168.10.42 is down.",
        "NI number AB 12 34 56 C needs a statement.",
        "London office +44 20 7946 0958.",
        "Traffic from 2001:db8::8a2e:370:7334 spiked.",
        "A plain ticket about the weather.",
        "ECHO-ME: what is your contact address?",
        "Wire to DE89 3704 0044 0532 0130 00 or mail john at example dot com; \
         ISBN 978-0-306-40615-7 and Section 4.2.1.3 stay.",
    ];
    // Every row has the `team` column the template needs except the last one, which fails
    // after the pii stage: its failure record must hold the redacted seed too.
    let mut body = String::new();
    for (i, t) in texts.iter().enumerate() {
        body.push_str(
            &serde_json::json!({"id": format!("t{i}"), "text": t, "team": "support"}).to_string(),
        );
        body.push('\n');
    }
    body.push_str(
        &serde_json::json!({"id": "t-fail", "text": "Escalate to ops@acme-corp.co.uk now."})
            .to_string(),
    );
    body.push('\n');
    let seed = dir.path().join("tickets.jsonl");
    std::fs::write(&seed, body).unwrap();
    let out = dir.path().join("out");
    let pipeline = "  - stage: pii\n  - stage: generate\n    backend: m\n    template: \"Ticket for {{ team }}: {{ text }}\"\n    max_tokens: 24\n  - stage: pii\n    target: output\n";
    let yaml = job_yaml(
        "pii-e2e",
        &seed,
        &out,
        pipeline,
        &backend("m", &mock, "mock-model"),
    );
    // One row fails by design, above the default failure budget (1%).
    let yaml = yaml + "scheduling:\n  max_failed_fraction: 0.5\n";
    let output = run(dir.path(), "job.yaml", &yaml, &out);

    let sent = received_texts(&mock).join("\n");
    assert!(!sent.is_empty(), "the mock recorded no request");
    for p in PLANTED {
        assert!(
            !sent.contains(p),
            "planted {p:?} reached the backend:\n{sent}"
        );
    }
    for ph in [
        "[EMAIL]",
        "[PHONE]",
        "[CREDIT_CARD]",
        "[US_SSN]",
        "[IP_ADDRESS]",
        "[UK_NINO]",
        "[IBAN]",
    ] {
        assert!(
            sent.contains(ph),
            "{ph} missing from what the backend received:\n{sent}"
        );
    }

    assert_eq!(output.rows.len(), texts.len());
    assert_eq!(output.failures.len(), 1, "{:?}", output.failures);
    let f = &output.failures[0];
    assert_eq!(f.seed_id.as_deref(), Some("t-fail"));
    assert!(
        f.input.as_deref().unwrap_or("").contains("[EMAIL]"),
        "{f:?}"
    );
    for d in DECOYS {
        assert!(sent.contains(d), "decoy {d:?} was redacted:\n{sent}");
    }
    let all = all_output_text(&output);
    for p in PLANTED.iter().chain(MODEL_LEAK) {
        assert!(!all.contains(p), "{p:?} reached the output");
    }
    for d in DECOYS {
        assert!(all.contains(d), "decoy {d:?} missing from the output");
    }
    let echo = output.rows.iter().find(|r| r.seed_id == "t9").unwrap();
    assert_eq!(
        echo.completion.as_deref(),
        Some("Sure, write to [EMAIL] or call [PHONE] today.")
    );

    // Seed side: 2 e-mails, 2 phones, 1 each of the rest; model side: 1 e-mail and 1 phone.
    // The failing row's e-mail is redacted (checked above) but a failure carries no counters,
    // so neither the card nor the manifest counts it.
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("_manifest.json")).unwrap())
            .unwrap();
    let expected = [
        ("email", 3),
        ("phone", 3),
        ("credit_card", 1),
        ("us_ssn", 1),
        ("ipv4", 1),
        ("ipv6", 1),
        ("uk_nino", 1),
        ("iban", 1),
    ];
    assert_eq!(
        manifest["pii_redactions"],
        serde_json::json!(std::collections::BTreeMap::from(expected)),
        "the manifest's PII counts"
    );
    for (kind, n) in expected {
        let line = card
            .lines()
            .find(|l| l.contains(&format!("`{kind}`")))
            .unwrap_or_else(|| panic!("no `{kind}` line in the dataset card:\n{card}"));
        assert!(
            line.contains(&format!("| {n} |")),
            "{kind}: expected {n}: {line}"
        );
    }
}
