//! Every container that runs the synthforge image in every rendered Kubernetes overlay
//! (deploy/k8s/overlays/*) starts a command line the binary accepts, and the job file the
//! overlays submit is a valid job whose backends and credentials the overlay provides.
//!
//! Each container's arguments (with `$(VAR)` expanded as the kubelet does) are checked twice:
//! - parsed in full (required flags, conflicts, value types) by the binary's own argument
//!   definitions — the subcommand `Args` structs are compiled in from `src/cmd`, under the same
//!   subcommand names and global flag as `src/main.rs`;
//! - run through the real binary with `--help` appended, which parses every flag before it (an
//!   unknown flag or a bad value fails) and proves the subcommand and global flags are the real
//!   ones.
//!
//! Needs `kubectl` (for `kubectl kustomize`) and python3 with PyYAML (installed by
//! scripts/install-test-deps.sh).

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../src/cmd/mod.rs"]
mod cmd;
#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../src/logging.rs"]
mod logging;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{Parser, Subcommand};
use serde_json::Value;

/// The binary's command surface (`src/main.rs`), over the same subcommand argument structs.
/// Only parsed, never run: the fields are not read.
#[allow(dead_code)]
#[derive(Parser)]
#[command(name = "synthforge")]
struct Cli {
    #[arg(long, global = true, default_value = "text")]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Sub,
}

#[allow(dead_code, clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Sub {
    Run(cmd::run::RunArgs),
    Coordinator(cmd::coordinator::CoordinatorArgs),
    Worker(cmd::worker::WorkerArgs),
    Submit(cmd::submit::SubmitArgs),
    Status(cmd::status::StatusArgs),
    Cancel(cmd::status::CancelArgs),
    Validate(cmd::validate::ValidateArgs),
    Inspect(cmd::inspect::InspectArgs),
    MockBackend(synthforge_mock_backend::MockArgs),
}

const OVERLAYS: [&str; 3] = ["dev", "prod", "prod-hpa"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `name` on PATH or in the Python scripts directory (where pip puts console scripts).
fn find_tool(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if let Some(p) = on_path {
        return p;
    }
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .expect("python3");
    let p = PathBuf::from(String::from_utf8_lossy(&scripts.stdout).trim()).join(name);
    assert!(
        p.is_file(),
        "`{name}` not found (scripts/install-test-deps.sh installs it)"
    );
    p
}

/// The overlay as `kubectl kustomize` renders it, as JSON objects.
fn render(overlay: &str) -> Vec<Value> {
    let dir = repo_root().join("deploy/k8s/overlays").join(overlay);
    let out = Command::new(find_tool("kubectl"))
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut py = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with PyYAML");
    use std::io::Write;
    py.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let json = py.wait_with_output().unwrap();
    assert!(json.status.success(), "YAML to JSON failed for {overlay}");
    serde_json::from_slice::<Vec<Value>>(&json.stdout).unwrap()
}

/// One container that runs the synthforge image.
struct Invocation {
    place: String,
    args: Vec<String>,
}

fn pod_spec(doc: &Value) -> Option<&Value> {
    match doc["kind"].as_str()? {
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => {
            Some(&doc["spec"]["template"]["spec"])
        }
        "CronJob" => Some(&doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]),
        _ => None,
    }
}

/// `$(VAR)` expanded from the container's `env` as the kubelet does; downward-API fields get
/// plausible values. An undefined reference is an error (the kubelet would pass it literally).
fn expand(arg: &str, env: &BTreeMap<String, String>, place: &str) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find(')')
            .unwrap_or_else(|| panic!("{place}: unclosed $( in `{arg}`"));
        let name = &rest[start + 2..start + end];
        let value = env.get(name).unwrap_or_else(|| {
            panic!("{place}: `{arg}` uses $({name}), which env does not define")
        });
        out.push_str(value);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

fn container_env(c: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for e in c["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap().to_string();
        let value = if let Some(v) = e["value"].as_str() {
            v.to_string()
        } else {
            match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("status.podIP") => "10.1.2.3".into(),
                Some("metadata.name") => "pod-7f9c".into(),
                Some("metadata.namespace") => "synthforge".into(),
                _ => "from-a-secret".into(),
            }
        };
        env.insert(name, value);
    }
    env
}

fn synthforge_invocations(overlay: &str, docs: &[Value]) -> Vec<Invocation> {
    let mut found = Vec::new();
    for doc in docs {
        let Some(spec) = pod_spec(doc) else { continue };
        let containers = spec["initContainers"]
            .as_array()
            .into_iter()
            .chain(spec["containers"].as_array())
            .flatten();
        for c in containers {
            let image = c["image"].as_str().unwrap_or_default();
            let repo = image.split(':').next().unwrap_or_default();
            if !repo.ends_with("/synthforge") && repo != "synthforge" {
                continue;
            }
            let place = format!(
                "{overlay} {}/{} container {}",
                doc["kind"].as_str().unwrap(),
                doc["metadata"]["name"].as_str().unwrap(),
                c["name"].as_str().unwrap()
            );
            let mut args: Vec<String> = Vec::new();
            if let Some(command) = c["command"].as_array() {
                // A command replaces the image's ENTRYPOINT: it must still be the binary.
                let first = command.first().and_then(Value::as_str).unwrap_or_default();
                assert_eq!(
                    first, "/usr/local/bin/synthforge",
                    "{place}: command {command:?}"
                );
                args.extend(command[1..].iter().map(|v| v.as_str().unwrap().to_string()));
            }
            args.extend(
                c["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| v.as_str().unwrap().to_string()),
            );
            let env = container_env(c);
            let args = args.iter().map(|a| expand(a, &env, &place)).collect();
            found.push(Invocation { place, args });
        }
    }
    found
}

/// Parses with the binary's argument definitions; `Err` is clap's message.
fn parse(args: &[String]) -> Result<Cli, String> {
    Cli::try_parse_from(std::iter::once("synthforge".to_string()).chain(args.iter().cloned()))
        .map_err(|e| e.to_string())
}

/// Runs the real binary with `--help` appended: every flag before it is parsed.
fn real_binary_accepts(args: &[String]) -> Result<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_synthforge"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run synthforge");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn subcommand_name(cli: &Cli) -> &'static str {
    match cli.command {
        Sub::Run(_) => "run",
        Sub::Coordinator(_) => "coordinator",
        Sub::Worker(_) => "worker",
        Sub::Submit(_) => "submit",
        Sub::Status(_) => "status",
        Sub::Cancel(_) => "cancel",
        Sub::Validate(_) => "validate",
        Sub::Inspect(_) => "inspect",
        Sub::MockBackend(_) => "mock-backend",
    }
}

#[test]
fn every_container_command_line_parses_with_the_real_cli() {
    let mut seen: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for overlay in OVERLAYS {
        let docs = render(overlay);
        let invocations = synthforge_invocations(overlay, &docs);
        assert!(
            !invocations.is_empty(),
            "{overlay}: no container runs the synthforge image"
        );
        for inv in &invocations {
            let cli = parse(&inv.args)
                .unwrap_or_else(|e| panic!("{}: {:?} does not parse:\n{e}", inv.place, inv.args));
            let name = subcommand_name(&cli);
            let help = real_binary_accepts(&inv.args).unwrap_or_else(|e| {
                panic!(
                    "{}: synthforge {:?} --help refused:\n{e}",
                    inv.place, inv.args
                )
            });
            assert!(
                help.contains(&format!("Usage: synthforge {name}")),
                "{}: the binary's help is not `{name}`'s:\n{help}",
                inv.place
            );
            seen.entry(overlay).or_default().insert(name);
        }
    }
    for overlay in OVERLAYS {
        for role in ["coordinator", "worker", "submit"] {
            assert!(
                seen[overlay].contains(role),
                "{overlay}: no container runs `synthforge {role}` ({:?})",
                seen[overlay]
            );
        }
    }
    assert!(
        seen["dev"].contains("mock-backend"),
        "dev has no mock backend"
    );
}

/// The checks above have teeth: the mistakes they exist for are refused.
#[test]
fn broken_command_lines_are_refused() {
    let docs = render("prod");
    let invs = synthforge_invocations("prod", &docs);
    let find = |sub: &str| {
        invs.iter()
            .find(|i| i.args.first().map(String::as_str) == Some(sub))
            .unwrap_or_else(|| panic!("no `{sub}` container"))
            .args
            .clone()
    };
    // A misspelt flag: both checks refuse it.
    let mut worker = find("worker");
    worker.push("--grace=100".into());
    assert!(parse(&worker).is_err());
    assert!(real_binary_accepts(&worker).is_err());
    // A bad value: both refuse it.
    let mut worker = find("worker");
    worker.push("--parallel-tasks=two".into());
    assert!(parse(&worker).is_err());
    assert!(real_binary_accepts(&worker).is_err());
    // A missing required flag and a conflict: the full parse refuses them.
    let worker: Vec<String> = find("worker")
        .into_iter()
        .filter(|a| !a.starts_with("--coordinator"))
        .collect();
    assert!(parse(&worker).is_err());
    let mut coordinator = find("coordinator");
    coordinator.push("--state-dir=/tmp/state".into());
    let err = parse(&coordinator)
        .err()
        .expect("--etcd with --state-dir parses");
    assert!(err.contains("cannot be used with"), "{err}");
    // An undefined $(VAR) is caught before parsing.
    let env = BTreeMap::new();
    let undefined =
        std::panic::catch_unwind(|| expand("--advertise=http://$(POD_IP):7070", &env, "x"));
    assert!(undefined.is_err());
}

/// The job file the overlays submit is a valid job; its backends are Services of the overlay on
/// the port the Service serves, and its credentials are ones the workers define for those hosts.
#[test]
fn submitted_job_uses_the_overlays_backends_and_worker_credentials() {
    for overlay in OVERLAYS {
        let docs = render(overlay);
        let config = docs
            .iter()
            .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "synthforge-job")
            .unwrap_or_else(|| panic!("{overlay}: no synthforge-job ConfigMap"));
        let text = config["data"]["job.yaml"].as_str().unwrap();
        let spec = synthforge_core::spec::JobSpec::from_yaml(text, "job.yaml")
            .unwrap_or_else(|e| panic!("{overlay}: the submitted job is invalid: {e}"));
        spec.check_columns(None, "job.yaml")
            .unwrap_or_else(|e| panic!("{overlay}: {e}"));

        let services: BTreeSet<(String, u64)> = docs
            .iter()
            .filter(|d| d["kind"] == "Service")
            .flat_map(|d| {
                let name = d["metadata"]["name"].as_str().unwrap().to_string();
                d["spec"]["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(move |p| (name.clone(), p["port"].as_u64().unwrap()))
            })
            .collect();
        let worker = synthforge_invocations(overlay, &docs)
            .into_iter()
            .find(|i| i.args[0] == "worker")
            .unwrap();
        let credentials: Vec<(String, String)> = worker
            .args
            .iter()
            .filter_map(|a| a.strip_prefix("--credential="))
            .map(|c| {
                let (name, rest) = c.split_once('=').unwrap();
                let hosts = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or("");
                (name.to_string(), hosts.to_string())
            })
            .collect();

        for (name, backend) in &spec.backends {
            let url = backend
                .url
                .clone()
                .or_else(|| backend.urls.first().cloned());
            let url = reqwest::Url::parse(&url.unwrap()).unwrap();
            let host = url.host_str().unwrap().to_string();
            let port = url.port_or_known_default().unwrap() as u64;
            assert!(
                services.contains(&(host.clone(), port)),
                "{overlay}: backend `{name}` at {url} is not a Service of the overlay"
            );
            if let Some(cred) = &backend.credential {
                let (_, hosts) = credentials
                    .iter()
                    .find(|(n, _)| n == cred)
                    .unwrap_or_else(|| {
                        panic!(
                            "{overlay}: workers define no credential `{cred}` (backend `{name}`)"
                        )
                    });
                assert!(
                    hosts
                        .split(',')
                        .any(|h| h.trim() == format!("{host}:{port}") || h.trim() == host),
                    "{overlay}: credential `{cred}` may not be sent to {host}:{port} ({hosts})"
                );
            }
        }
    }
}
