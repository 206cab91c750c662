#!/usr/bin/env python3
"""Checks deploy/ offline: the Dockerfile with hadolint, every kustomize overlay rendered with
`kubectl kustomize` and validated with `kubernetes-validate --strict`, the custom resources
(KEDA ScaledObject, prometheus-operator ServiceMonitor) against their published models with
unknown fields refused, the PromQL of the autoscaling queries with promtool, and the deployment
rules the manifests promise (non-root, read-only root filesystem, no capabilities, seccomp,
resources, probes, drain budget, HA shape, network policies, no secret values).

Run from anywhere: `python3 scripts/check-manifests.py [--render-dir DIR] [--deploy-dir DIR]`. With --render-dir the
rendered overlays are also written there (tests/tests/k8s_manifests.rs and cli/tests read them).
Exits non-zero and names every problem when something is wrong.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
OVERLAYS = ["dev", "prod", "prod-hpa"]
K8S_VERSION = "1.33.0"
NAMESPACE = "synthforge"

# Custom resources kubernetes-validate has no schema for, and the published models (PyPI
# cloudcoil-models-*) that describe them.
CRD_MODELS = {
    ("keda.sh/v1alpha1", "ScaledObject"): ("cloudcoil.models.keda.v1alpha1", "ScaledObject"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): (
        "cloudcoil.models.prometheus_operator.v1",
        "ServiceMonitor",
    ),
}

SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL)", re.I)


class Problems:
    """Collects every problem so one run reports them all."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.items.append(f"{where}: {what}")

    def check(self, cond: bool, where: str, what: str) -> None:
        if not cond:
            self.add(where, what)


def tool(name: str) -> str:
    # pip may put console scripts beside this Python rather than on PATH.
    path = shutil.which(name) or shutil.which(name, path=sysconfig.get_path("scripts"))
    if path is None:
        sys.exit(f"check-manifests: `{name}` not found (scripts/install-test-deps.sh installs it)")
    return path


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def check_dockerfile(p: Problems) -> None:
    out = run([tool("hadolint"), "--no-color", str(DEPLOY / "Dockerfile")])
    if out.returncode != 0:
        p.add("deploy/Dockerfile", "hadolint:\n" + out.stdout + out.stderr)
    else:
        print("hadolint deploy/Dockerfile: clean")


def render(overlay: str) -> str:
    out = run([tool("kubectl"), "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)])
    if out.returncode != 0:
        sys.exit(f"check-manifests: kubectl kustomize {overlay} failed:\n{out.stderr}")
    return out.stdout


def validate_core(overlay: str, text: str, p: Problems) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=f"-{overlay}.yaml") as f:
        f.write(text)
        f.flush()
        out = run(
            [tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, "--quiet", f.name]
        )
    unknown = re.findall(r"Couldn't find schema for kind (\S+) with api version (\S+)", out.stdout)
    for kind, api in unknown:
        if (api, kind) not in CRD_MODELS:
            p.add(overlay, f"kubernetes-validate has no schema for {api} {kind}")
    failures = [
        line
        for line in (out.stdout + out.stderr).splitlines()
        if line.strip() and "Couldn't find schema" not in line
    ]
    if out.returncode != 0 or failures:
        p.add(overlay, "kubernetes-validate --strict:\n" + "\n".join(failures))
    else:
        print(f"kubernetes-validate --strict -k {K8S_VERSION} {overlay}: every core kind passes")


def unknown_fields(given, kept, path: str) -> list[str]:
    """Keys present in the manifest but dropped by the model (fields the schema lacks)."""
    found: list[str] = []
    if isinstance(given, dict):
        kept = kept if isinstance(kept, dict) else {}
        for k, v in given.items():
            if k not in kept:
                found.append(f"{path}.{k}")
            else:
                found.extend(unknown_fields(v, kept[k], f"{path}.{k}"))
    elif isinstance(given, list) and isinstance(kept, list):
        for i, (g, k) in enumerate(zip(given, kept)):
            found.extend(unknown_fields(g, k, f"{path}[{i}]"))
    return found


def validate_crds(overlay: str, docs: list[dict], p: Problems) -> None:
    import importlib

    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key not in CRD_MODELS:
            continue
        where = f"{overlay} {doc['kind']}/{doc['metadata']['name']}"
        module, cls = CRD_MODELS[key]
        try:
            model = getattr(importlib.import_module(module), cls)
        except ImportError as e:
            print(f"SKIPPED {where}: no schema for {doc['kind']} ({e}; pip install {module_pkg(module)})")
            continue
        try:
            obj = model.model_validate(doc)
        except Exception as e:  # pydantic.ValidationError, with every field path in its text
            p.add(where, f"schema: {e}")
            continue
        kept = obj.model_dump(by_alias=True, exclude_unset=True, mode="json")
        extra = unknown_fields(doc, kept, doc["kind"])
        if extra:
            p.add(where, "fields the schema does not have: " + ", ".join(extra))
        else:
            print(f"schema {module}.{cls}: {where} passes (unknown fields refused)")


def module_pkg(module: str) -> str:
    return "cloudcoil-models-" + module.split(".")[2].replace("_", "-")


def promql_ok(expr: str, where: str, p: Problems) -> None:
    rules = {"groups": [{"name": "check", "rules": [{"record": "check:expr", "expr": expr}]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".rules.yaml") as f:
        yaml.safe_dump(rules, f)
        f.flush()
        out = run([tool("promtool"), "check", "rules", f.name])
    if out.returncode != 0:
        p.add(where, f"invalid PromQL `{expr}`: {out.stdout}{out.stderr}")
    else:
        print(f"promtool: {where} query is valid PromQL")


def check_autoscaling_queries(p: Problems) -> None:
    so = yaml.safe_load((DEPLOY / "k8s/components/keda/scaledobject.yaml").read_text())
    for t in so["spec"]["triggers"]:
        promql_ok(t["metadata"]["query"], "components/keda ScaledObject", p)
    values = yaml.safe_load((DEPLOY / "k8s/prometheus-adapter/values.yaml").read_text())
    for rule in values["rules"]["external"]:
        expr = rule["metricsQuery"].replace("<<.LabelMatchers>>", f'namespace="{NAMESPACE}"')
        expr = expr.replace("<<.Series>>", "synthforge_queue_depth").replace("<<.GroupBy>>", "namespace")
        promql_ok(expr, "prometheus-adapter external rule", p)
        promql_ok(rule["seriesQuery"], "prometheus-adapter seriesQuery", p)


def pod_spec(doc: dict) -> dict | None:
    kind = doc.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]["spec"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind == "Pod":
        return doc["spec"]
    return None


def check_pod(where: str, spec: dict, p: Problems) -> None:
    psc = spec.get("securityContext", {})
    p.check(spec.get("automountServiceAccountToken") is False, where, "mounts a service account token")
    p.check(
        psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
        where,
        "pod seccompProfile is not RuntimeDefault",
    )
    for c in spec.get("initContainers", []) + spec["containers"]:
        cw = f"{where} container {c['name']}"
        sc = c.get("securityContext", {})
        p.check(
            sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True
            and sc.get("runAsUser", psc.get("runAsUser", 1)) != 0,
            cw,
            "may run as root",
        )
        p.check(sc.get("readOnlyRootFilesystem") is True, cw, "root filesystem is writable")
        p.check(sc.get("allowPrivilegeEscalation") is False, cw, "allows privilege escalation")
        p.check(sc.get("capabilities", {}).get("drop") == ["ALL"], cw, "does not drop ALL capabilities")
        p.check(not sc.get("capabilities", {}).get("add"), cw, "adds capabilities")
        res = c.get("resources", {})
        p.check(bool(res.get("requests", {}).get("cpu")), cw, "no cpu request")
        p.check(bool(res.get("requests", {}).get("memory")), cw, "no memory request")
        p.check(bool(res.get("limits", {}).get("memory")), cw, "no memory limit")
        for e in c.get("env", []):
            if "value" in e and SECRET_NAME.search(e["name"]):
                p.add(cw, f"env {e['name']} holds a literal value; take it from a Secret")
        for a in c.get("args", []) + c.get("command", []):
            if re.match(r"--(token|worker-token|read-token|api-key)=", a):
                p.add(cw, f"secret passed as a literal argument `{a.split('=')[0]}`")


def flag(args: list[str], name: str) -> str | None:
    for a in args:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d.get("kind") == kind}


def check_overlay(overlay: str, docs: list[dict], p: Problems) -> None:
    p.check(not by_kind(docs, "Secret"), overlay, "a Secret is in the manifests (create secrets out of band)")
    for d in docs:
        if d["kind"] != "Namespace":
            p.check(d["metadata"].get("namespace") == NAMESPACE, overlay, f"{d['kind']}/{d['metadata']['name']} not in {NAMESPACE}")
        spec = pod_spec(d)
        if spec is not None:
            check_pod(f"{overlay} {d['kind']}/{d['metadata']['name']}", spec, p)

    deps = by_kind(docs, "Deployment")
    coord = deps["synthforge-coordinator"]["spec"]["template"]["spec"]["containers"][0]
    p.check(coord["readinessProbe"]["httpGet"]["path"] == "/readyz", overlay, "coordinator readiness is not /readyz (leadership)")
    p.check(coord["livenessProbe"]["httpGet"]["path"] == "/healthz", overlay, "coordinator liveness is not /healthz")
    svc = by_kind(docs, "Service")["coordinator"]
    p.check(not svc["spec"].get("publishNotReadyAddresses"), overlay, "coordinator Service routes to standbys")

    worker_pod = deps["synthforge-worker"]["spec"]["template"]["spec"]
    worker = worker_pod["containers"][0]
    grace = float(flag(worker["args"], "grace-s") or 30)
    pre_stop = worker.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    tgps = worker_pod.get("terminationGracePeriodSeconds", 30)
    p.check(
        tgps >= pre_stop + grace + 10,
        overlay,
        f"worker terminationGracePeriodSeconds {tgps} leaves no room after preStop {pre_stop}s + --grace-s {grace}s",
    )
    p.check(bool(worker.get("lifecycle", {}).get("preStop")), overlay, "worker has no preStop")

    ns_policies = by_kind(docs, "NetworkPolicy")
    p.check("default-deny-ingress" in ns_policies, overlay, "no default-deny NetworkPolicy")
    allowed = set()
    for rule in ns_policies.get("coordinator-ingress", {}).get("spec", {}).get("ingress", []):
        for src in rule.get("from", []):
            allowed.add(src.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name"))
    p.check(
        allowed == {"synthforge-worker", "synthforge-submit", "prometheus"},
        overlay,
        f"coordinator reachable from {sorted(map(str, allowed))}, want workers, the submit Job, Prometheus",
    )
    etcd_from = set()
    for rule in ns_policies.get("etcd-ingress", {}).get("spec", {}).get("ingress", []):
        ports = {pt["port"] for pt in rule.get("ports", [])}
        if 2379 in ports:
            for src in rule.get("from", []):
                etcd_from.add(src.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name"))
    p.check(etcd_from <= {"synthforge-coordinator", "etcd"}, overlay, f"etcd clients allowed: {etcd_from}")

    etcd = by_kind(docs, "StatefulSet")["etcd"]
    members = etcd["spec"]["replicas"]
    cmd = etcd["spec"]["template"]["spec"]["containers"][0]["command"]
    initial = flag(cmd, "initial-cluster") or ""
    p.check(len(initial.split(",")) == members, overlay, f"etcd: {members} replicas but --initial-cluster={initial}")
    p.check(flag(cmd, "auto-compaction-retention") is not None, overlay, "etcd without auto-compaction")
    p.check(flag(cmd, "quota-backend-bytes") is not None, overlay, "etcd without a sized quota")

    if overlay == "dev":
        p.check(deps["synthforge-coordinator"]["spec"]["replicas"] == 1, overlay, "dev runs more than one coordinator")
        p.check(members == 1, overlay, "dev etcd is not single-member")
        return
    # prod and prod-hpa
    p.check(deps["synthforge-coordinator"]["spec"]["replicas"] >= 2, overlay, "coordinators are not HA")
    p.check(members == 3, overlay, "etcd is not 3 members")
    for name in ("synthforge-coordinator",):
        aff = deps[name]["spec"]["template"]["spec"].get("affinity", {}).get("podAntiAffinity")
        p.check(bool(aff), overlay, f"{name} without anti-affinity")
    p.check(bool(etcd["spec"]["template"]["spec"].get("affinity", {}).get("podAntiAffinity")), overlay, "etcd without anti-affinity")
    pdbs = by_kind(docs, "PodDisruptionBudget")
    p.check({"etcd", "synthforge-worker"} <= set(pdbs), overlay, f"PodDisruptionBudgets: {sorted(pdbs)}")
    gpu = [
        n for n, d in deps.items()
        if any("nvidia.com/gpu" in c.get("resources", {}).get("limits", {}) for c in d["spec"]["template"]["spec"]["containers"])
    ]
    p.check(len(gpu) >= 2, overlay, f"GPU backend pools: {gpu}, want a generator and a judge")
    for n in gpu:
        c = deps[n]["spec"]["template"]["spec"]["containers"][0]
        p.check(c["readinessProbe"]["httpGet"]["path"] == "/health", overlay, f"{n} readiness is not /health")
    scalers = by_kind(docs, "ScaledObject") | by_kind(docs, "HorizontalPodAutoscaler")
    p.check(len(scalers) == 1, overlay, f"want exactly one autoscaler for the workers, got {sorted(scalers)}")
    p.check(
        "replicas" not in deps["synthforge-worker"]["spec"],
        overlay,
        "the autoscaled worker Deployment sets replicas (kubectl apply would reset the count)",
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--render-dir", type=Path, help="also write each rendered overlay here")
    ap.add_argument("--deploy-dir", type=Path, help="check this copy of deploy/ instead")
    a = ap.parse_args()
    global DEPLOY
    if a.deploy_dir:
        DEPLOY = a.deploy_dir.resolve()
    p = Problems()
    check_dockerfile(p)
    check_autoscaling_queries(p)
    for overlay in OVERLAYS:
        text = render(overlay)
        if a.render_dir:
            a.render_dir.mkdir(parents=True, exist_ok=True)
            (a.render_dir / f"{overlay}.yaml").write_text(text)
        docs = [d for d in yaml.safe_load_all(text) if d]
        print(f"{overlay}: {len(docs)} objects: " + ", ".join(sorted({d['kind'] for d in docs})))
        validate_core(overlay, text, p)
        validate_crds(overlay, docs, p)
        check_overlay(overlay, docs, p)
    if p.items:
        print(f"\n{len(p.items)} problem(s):", file=sys.stderr)
        for item in p.items:
            print(f"  - {item}", file=sys.stderr)
        return 1
    print("check-manifests: all overlays pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
