//! The Kubernetes deployment in deploy/ checked offline by scripts/check-manifests.py: hadolint
//! on the Dockerfile; every overlay rendered with `kubectl kustomize` and validated with
//! `kubernetes-validate --strict`; the KEDA ScaledObject and the ServiceMonitor against the
//! published KEDA / prometheus-operator models with unknown fields refused; the autoscaling PromQL
//! with promtool; and the rules the manifests promise (restricted pods, resources, probes, drain
//! budget, HA shape, network policies, no secret values). A broken copy of deploy/ is refused
//! with each mistake named, so the check is known to bite.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use synthforge_tests::find_tool;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn check_manifests(extra: &[&str]) -> Output {
    Command::new(find_tool("python3"))
        .arg(repo_root().join("scripts/check-manifests.py"))
        .args(extra)
        .output()
        .expect("run scripts/check-manifests.py")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn every_overlay_renders_validates_and_keeps_its_promises() {
    let rendered = tempfile::tempdir().unwrap();
    let out = check_manifests(&["--render-dir", rendered.path().to_str().unwrap()]);
    let report = text(&out);
    println!("{report}");
    assert!(out.status.success(), "check-manifests failed:\n{report}");
    for overlay in ["dev", "prod", "prod-hpa"] {
        assert!(
            report.contains(&format!("{overlay}: every core kind passes")),
            "{overlay} not validated:\n{report}"
        );
        let yaml = std::fs::read_to_string(rendered.path().join(format!("{overlay}.yaml")))
            .unwrap_or_else(|e| panic!("{overlay} not rendered: {e}"));
        assert!(
            yaml.contains("kind: Deployment"),
            "{overlay} rendered empty"
        );
    }
    // The custom resources were checked against their schemas, not skipped.
    assert!(
        !report.contains("SKIPPED"),
        "a custom resource went unchecked:\n{report}"
    );
    assert!(report.contains("prod ScaledObject/synthforge-worker passes"));
    assert!(report.contains("prod ServiceMonitor/synthforge-coordinator passes"));
    assert!(report.contains("hadolint deploy/Dockerfile: clean"));
}

/// Copies `from` into `to` recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Replaces `old` (which must be there) with `new` in `path`.
fn edit(path: &Path, old: &str, new: &str) {
    let s = std::fs::read_to_string(path).unwrap();
    assert!(s.contains(old), "{} has no `{old}`", path.display());
    std::fs::write(path, s.replacen(old, new, 1)).unwrap();
}

#[test]
fn mistakes_in_a_copy_of_deploy_are_each_named() {
    let dir = tempfile::tempdir().unwrap();
    let deploy = dir.path().join("deploy");
    copy_dir(&repo_root().join("deploy"), &deploy);
    // An unpinned apt package (hadolint DL3008).
    edit(
        &deploy.join("Dockerfile"),
        "protobuf-compiler=3.21.12-3 ",
        "protobuf-compiler ",
    );
    // A field the ScaledObject schema does not have.
    edit(
        &deploy.join("k8s/components/keda/scaledobject.yaml"),
        "  cooldownPeriod: 300\n",
        "  cooldownPeriod: 300\n  cooldownSeconds: 300\n",
    );
    // A misspelt core field (strict schema validation).
    edit(
        &deploy.join("k8s/base/worker.yaml"),
        "      terminationGracePeriodSeconds: 120\n",
        "      terminationGracePeriod: 120\n",
    );
    // A writable root filesystem, and a secret value in plain sight.
    edit(
        &deploy.join("k8s/base/coordinator.yaml"),
        "            readOnlyRootFilesystem: true\n",
        "            readOnlyRootFilesystem: false\n",
    );
    edit(
        &deploy.join("k8s/base/coordinator.yaml"),
        "          env:\n",
        "          env:\n            - {name: OPENAI_API_KEY, value: sk-oops}\n",
    );
    // Invalid PromQL in the autoscaler's query.
    edit(
        &deploy.join("k8s/components/keda/scaledobject.yaml"),
        "(max(synthforge_queue_depth{",
        "(max(synthforge_queue_depth{{",
    );

    let out = check_manifests(&["--deploy-dir", deploy.to_str().unwrap()]);
    let report = text(&out);
    assert!(!out.status.success(), "a broken deploy/ passed:\n{report}");
    for expected in [
        "DL3008",
        "ScaledObject.spec.cooldownSeconds",
        "terminationGracePeriod",
        "container coordinator: root filesystem is writable",
        "env OPENAI_API_KEY holds a literal value",
        "invalid PromQL",
    ] {
        assert!(
            report.contains(expected),
            "`{expected}` not reported:\n{report}"
        );
    }
    let _ = find_tool("kubectl");
}
