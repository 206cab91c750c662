#!/usr/bin/env python3
"""Measurements for scripts/scale-bench.sh (docs/scale-bench.md). Standard library + pyarrow.

  watch HTTP JOB_ID OUT.json [--pid NAME=PID ...] [--until planned|ended] [--timeout S]
      JOB_ID `-` is the first job the coordinator lists (start the watch before submitting).
      Polls the coordinator's /api/jobs every 0.25 s (0.1 s until planned) until the job has been planned (tasks known,
      state no longer `planning`) or has ended. Writes the time spent in each state, the time at
      which every seed row was done (rows_done >= rows_total: generation over, whatever runs
      after it is the dedup/finalize phase), the final job view, and per named process the peak
      resident memory (VmHWM at the end; the kernel's high-water mark, so no peak is missed
      between samples) and CPU seconds (user + system).
  proc NAME=PID ...
      Prints the same per-process figures as JSON.
  etcd URL
      etcd's own size metrics (/metrics): bytes of the backend file and bytes in use.
  row a|b|c|d --header | RUN_DIR...
      The Markdown header, or the row of a run from the JSON files scale-bench.sh left in its run
      directory (sub-bench d takes two: the big task's run, then the small one's).
  audit OUT_DIR PLANTED.tsv SEEDS.parquet
      Reads the dataset's manifest and data files: which seed ids are in the output, which of the
      planted duplicates were removed (found), which distinct rows were removed (wrongly).
"""

import json
import os
import sys
import time
import urllib.request

TERMINAL = {"succeeded", "failed", "cancelled"}


def proc_figures(pid):
    """Peak and current RSS (bytes) and CPU seconds of a live process; {} once it is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key] = int(value.split()[0]) * 1024
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        out["cpu_s"] = (int(fields[11]) + int(fields[12])) / ticks
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return {}
    return out


def parse_pids(items):
    pids = {}
    for item in items:
        name, _, pid = item.partition("=")
        pids[name] = int(pid)
    return pids


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def find_job(http, job_id):
    """The job named job_id, or with `-` the first job of a fresh coordinator (the watch starts
    before Submit answers, so the time the job is planned is seen as it happens)."""
    for job in get_json(f"{http}/api/jobs"):
        if job_id == "-" or job.get("record", {}).get("id") == job_id:
            return job
    return None


def cmd_watch(args):
    import argparse

    p = argparse.ArgumentParser(prog="watch")
    p.add_argument("http")
    p.add_argument("job_id")
    p.add_argument("out")
    p.add_argument("--pid", action="append", default=[])
    p.add_argument("--until", choices=["planned", "ended"], default="ended")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--started", type=float, default=None, help="Unix time the submit began")
    a = p.parse_args(args)
    pids = parse_pids(a.pid)
    started = a.started or time.time()
    deadline = time.time() + a.timeout
    states = {}
    last_state, last_t = None, None
    rows_done_at = None
    job = None
    peak_rss = {}
    outcome = "timeout"
    while time.time() < deadline:
        now = time.time()
        try:
            job = find_job(a.http, a.job_id) or job
        except OSError:
            job = job  # a busy coordinator may miss one poll; the next one counts
        for name, pid in pids.items():
            rss = proc_figures(pid).get("VmRSS", 0)
            peak_rss[name] = max(peak_rss.get(name, 0), rss)
        if job:
            rec = job["record"]
            state = rec["state"]
            if state != last_state:
                if last_state is not None:
                    states[last_state] = states.get(last_state, 0) + now - last_t
                last_state, last_t = state, now
            total = rec.get("rows_total") or 0
            if rows_done_at is None and total and (job.get("rows_done") or 0) >= total:
                rows_done_at = now
            if a.until == "planned" and state != "planning" and rec.get("tasks_total", 0) > 0:
                outcome = "planned"
                break
            if state in TERMINAL:
                outcome = state
                break
        time.sleep(0.1 if a.until == "planned" else 0.25)
    end = time.time()
    if last_state is not None:
        states[last_state] = states.get(last_state, 0) + end - last_t
    result = {
        "outcome": outcome,
        "wall_s": end - started,
        "state_s": {k: round(v, 3) for k, v in states.items()},
        "rows_done_s": None if rows_done_at is None else rows_done_at - started,
        "after_rows_done_s": None if rows_done_at is None else end - rows_done_at,
        "job": job,
        "proc": {name: dict(proc_figures(pid), sampled_peak_rss=peak_rss.get(name, 0)) for name, pid in pids.items()},
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print(outcome)


def cmd_proc(args):
    print(json.dumps({name: proc_figures(pid) for name, pid in parse_pids(args).items()}))


def cmd_etcd(args):
    url = args[0].rstrip("/") + "/metrics"
    wanted = {
        "etcd_mvcc_db_total_size_in_bytes": "db_bytes",
        "etcd_mvcc_db_total_size_in_use_in_bytes": "db_in_use_bytes",
        "etcd_debugging_mvcc_keys_total": "keys",
    }
    out = {}
    with urllib.request.urlopen(url, timeout=10) as r:
        for line in r.read().decode().splitlines():
            name, _, value = line.partition(" ")
            if name in wanted:
                out[wanted[name]] = int(float(value))
    print(json.dumps(out))


def cmd_audit(args):
    import pyarrow.parquet as pq

    out_dir, planted_path, seeds = args
    manifest = json.load(open(os.path.join(out_dir, "_manifest.json")))
    planted = {}
    with open(planted_path) as f:
        for line in f:
            dup, orig = line.rstrip("\n").split("\t")
            planted[dup] = orig
    kept = set()
    failed = set()
    records = 0
    for entry in manifest["files"]:
        t = pq.read_table(os.path.join(out_dir, entry["path"]), columns=["seed_id"])
        ids = t.column("seed_id").to_pylist()
        if entry["kind"] == "data":
            kept.update(ids)
            records += len(ids)
        else:
            failed.update(ids)
    seed_ids = pq.read_table(seeds, columns=["id"]).column("id").to_pylist()
    absent = [s for s in seed_ids if s not in kept and s not in failed]
    found = sum(1 for s in absent if s in planted)
    wrongly = [s for s in absent if s not in planted]
    print(json.dumps({
        "seed_rows": len(seed_ids),
        "output_records": records,
        "failed_rows": len(failed),
        "planted": len(planted),
        "found": found,
        "recall": found / len(planted) if planted else 1.0,
        "wrongly_removed": len(wrongly),
        "wrongly_removed_examples": wrongly[:5],
        "originals_missing": sum(1 for o in set(planted.values()) if o not in kept),
        "manifest_removed": manifest.get("removed", {}),
        "accounting_difference": manifest.get("accounting", {}).get("difference"),
    }))


MIB = 1024 * 1024

HEADERS = {
    "a": ["input", "seed rows", "tasks", "Submit answered (s)", "planned (s)", "coordinator peak RSS (MiB)"],
    "b": ["seed rows", "outcome", "wall (s)", "rows/s", "coordinator peak RSS (MiB)",
          "worker peak RSS (MiB)", "etcd db MB (in use) / dir MB", "dedup phase (s)",
          "duplicates found / planted", "distinct rows removed"],
    "c": ["tasks", "outcome", "wall (s)", "tasks/s", "etcd db MB (in use) / dir MB", "etcd RSS after (MiB)",
          "coordinator peak RSS (MiB)", "worker slot ms per task", "lease→complete ms (mean)",
          "CPU ms per task: coordinator / workers / etcd / mock"],
    "d": ["rows in the big task", "worker peak RSS, big task (MiB)", "worker peak RSS, 1,000-row task (MiB)",
          "ratio", "wall, big task (s)"],
}


def load(run, name, default=None):
    try:
        with open(os.path.join(run, name)) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def peak(proc, prefix):
    """Largest VmHWM (MiB) among the processes whose name starts with prefix."""
    values = [v.get("VmHWM", 0) for k, v in proc.items() if k.startswith(prefix)]
    return f"{max(values) / MIB:.0f}" if values and max(values) else "?"


def cpu_ms(proc, prefix, per):
    total = sum(v.get("cpu_s", 0) for k, v in proc.items() if k.startswith(prefix))
    return f"{total * 1000 / per:.1f}" if per else "?"


def num(x, fmt="{:,.1f}"):
    return "?" if x is None else fmt.format(x)


def etcd_mb(run):
    """`db MB (in use) / data dir MB`: the backend file (what --quota-backend-bytes limits) and
    the whole data directory (WAL segments are preallocated 64 MB each, snapshots)."""
    e = load(run, "etcd.json", {})
    if "db_bytes" not in e:
        return "?"
    try:
        with open(os.path.join(run, "etcd_dir_bytes")) as f:
            dir_mb = f"{int(f.read()) / 1e6:.0f}"
    except (FileNotFoundError, ValueError):
        dir_mb = "?"
    return f"{e['db_bytes'] / 1e6:.1f} ({e.get('db_in_use_bytes', 0) / 1e6:.1f}) / {dir_mb}"


def task_ms(run):
    """Mean of the coordinator's synthforge_task_duration_seconds (lease to accepted completion)."""
    values = {}
    try:
        with open(os.path.join(run, "metrics.txt")) as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name in ("synthforge_task_duration_seconds_sum", "synthforge_task_duration_seconds_count"):
                    values[name.rsplit("_", 1)[1]] = float(value)
    except FileNotFoundError:
        return "?"
    if not values.get("count"):
        return "?"
    return f"{values['sum'] * 1000 / values['count']:.1f}"


def cells(bench, runs):
    run = runs[0]
    watch = load(run, "watch.json", {})
    job = (watch.get("job") or {})
    rec = job.get("record", {})
    proc = watch.get("proc", {})
    if bench == "a":
        meta = load(run, "meta.json", {})
        after = load(run, "coordinator_after.json", {})
        return [meta.get("input", "?"), f"{meta.get('rows', 0):,}", f"{rec.get('tasks_total', 0):,}",
                num(load(run, "submit.json", {}).get("submit_s"), "{:.2f}"),
                num(watch.get("wall_s") if watch.get("outcome") == "planned" else None, "{:.2f}"),
                peak(after, "coordinator")]
    if bench == "b":
        audit = load(run, "audit.json", {})
        rows = rec.get("rows_total", 0)
        wall = watch.get("wall_s")
        found = f"{audit['found']:,} / {audit['planted']:,}" if audit else "?"
        return [f"{rows:,}", watch.get("outcome", "?"), num(wall), num(rows / wall if wall else None, "{:,.0f}"),
                peak(proc, "coordinator"), peak(proc, "worker"), etcd_mb(run),
                num(watch.get("after_rows_done_s")), found,
                str(audit["wrongly_removed"]) if audit else "?"]
    if bench == "c":
        tasks = rec.get("tasks_total", 0)
        wall = watch.get("wall_s")
        etcd_proc = load(run, "etcd_proc.json", {})
        cpu = " / ".join(cpu_ms(proc, p, tasks) for p in ("coordinator", "worker", "etcd", "mock"))
        slots = load(run, "meta.json", {}).get("slots")
        slot_ms = num(slots * wall * 1000 / tasks if slots and wall and tasks else None)
        return [f"{tasks:,}", watch.get("outcome", "?"), num(wall), num(tasks / wall if wall else None, "{:,.0f}"),
                etcd_mb(run), num(etcd_proc.get("etcd", {}).get("VmRSS", 0) / MIB, "{:.0f}"),
                peak(proc, "coordinator"), slot_ms, task_ms(run), cpu]
    if bench == "d":
        small = load(runs[1], "watch.json", {}) if len(runs) > 1 else {}
        big_mib = max((v.get("VmHWM", 0) for k, v in proc.items() if k.startswith("worker")), default=0)
        small_mib = max((v.get("VmHWM", 0) for k, v in small.get("proc", {}).items() if k.startswith("worker")), default=0)
        ratio = f"{big_mib / small_mib:.2f}" if big_mib and small_mib else "?"
        outcome = "" if watch.get("outcome") == "succeeded" else f" ({watch.get('outcome')})"
        return [f"{rec.get('rows_total', 0):,}{outcome}", peak(proc, "worker"),
                peak(small.get("proc", {}), "worker"), ratio, num(watch.get("wall_s"))]
    raise SystemExit(f"unknown sub-bench {bench}")


def cmd_row(args):
    bench, rest = args[0], args[1:]
    head = ["date", "commit"] + HEADERS[bench] + ["load avg"]
    if rest == ["--header"]:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        return
    meta = load(rest[0], "meta.json", {})
    try:
        with open(os.path.join(rest[0], "loadavg")) as f:
            loadavg = f.read().split()[0]
    except FileNotFoundError:
        loadavg = "?"
    commit = meta.get("commit", "?") + (" (quick)" if meta.get("quick") else "")
    print("| " + " | ".join([meta.get("date", "?"), commit] + cells(bench, rest) + [loadavg]) + " |")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    {"watch": cmd_watch, "proc": cmd_proc, "etcd": cmd_etcd, "audit": cmd_audit, "row": cmd_row}[cmd](args)


if __name__ == "__main__":
    main()
