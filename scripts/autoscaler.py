#!/usr/bin/env python3
"""A local stand-in for the Kubernetes worker autoscaler (deploy/k8s/components/{keda,hpa}).

Every --interval seconds it reads the coordinators' /metrics, computes the work outstanding
(`synthforge_queue_depth`, the pending tasks of running jobs, plus the tasks being run:
`synthforge_tasks{state="leased"}`, as the leading coordinator reports them; while no
coordinator leads, nothing is decided) and applies the HPA algorithm to a set of worker
processes:

  desired = ceil(outstanding / target)            (target = tasks per worker)
  no change while |outstanding / (replicas * target) - 1| <= tolerance   (HPA: 0.1)
  scale up at once; scale down to the highest desired of the last --window seconds
  (the HPA's scale-down stabilisation window), clamped to [--min, --max]

Scaling up starts `WORKER_COMMAND` (every `{id}` replaced by a fresh worker id); scaling down
sends SIGTERM to the newest workers, which finish or hand back their tasks and exit (a
terminating worker no longer counts as a replica, as a terminating pod does not). Each poll
prints one decision line when something changed (and every 10 s otherwise); `recommended` is
the formula's answer now, `replicas` the change made after the stabilisation window:

  autoscaler t=12.5s queue_depth=31 leased=4 outstanding=35 recommended=5 replicas=2->5 scale-up

SIGTERM or SIGINT stops every worker with SIGTERM, waits up to --stop-timeout, then exits.
Usage: autoscaler.py --metrics URL[,URL] [--min 1 --max 8 --target 2 --window 30] -- CMD ...
"""

from __future__ import annotations

import argparse
import math
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)')


def parse_metrics(text: str) -> tuple[float, float]:
    """(queue depth, leased tasks) from one coordinator's Prometheus text."""
    depth = 0.0
    leased = 0.0
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if not m:
            continue
        if m["name"] == "synthforge_queue_depth":
            depth = float(m["value"])
        elif m["name"] == "synthforge_tasks" and 'state="leased"' in (m["labels"] or ""):
            leased += float(m["value"])
    return depth, leased


def read_outstanding(urls: list[str], timeout: float) -> tuple[float, float] | None:
    """The leader's (queue depth, leased tasks); None while no coordinator leads.

    Only the leader's view counts: a standby, or a replica that has just won an election and is
    still loading the tasks, would report an empty queue and make a failover look like the end
    of the work. Without a leader the autoscaler keeps the replicas it has.
    """
    for url in urls:
        base = url.rstrip("/")
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=timeout):
                pass
            with urllib.request.urlopen(base + "/metrics", timeout=timeout) as r:
                return parse_metrics(r.read().decode())
        except OSError:  # a standby's 503, or a replica that is down
            continue
    return None


@dataclass
class Hpa:
    """The HPA's replica computation, with its scale-down stabilisation window."""

    min_replicas: int
    max_replicas: int
    target: float
    window_s: float
    tolerance: float = 0.1
    history: list[tuple[float, int]] = field(default_factory=list)

    def raw_desired(self, outstanding: float, current: int) -> int:
        if current > 0:
            ratio = outstanding / (current * self.target)
            if abs(ratio - 1.0) <= self.tolerance:
                return current
        return math.ceil(outstanding / self.target)

    def decide(self, now: float, outstanding: float, current: int) -> tuple[int, int]:
        """(recommendation now, replicas to run): up at once, down to the window's highest."""
        recommended = min(self.max_replicas, max(self.min_replicas, self.raw_desired(outstanding, current)))
        self.history.append((now, recommended))
        self.history = [(t, d) for t, d in self.history if now - t <= self.window_s]
        if recommended >= current:
            return recommended, recommended
        return recommended, min(current, max(d for _, d in self.history))


class Workers:
    """The worker processes: started from a command template, stopped with SIGTERM."""

    def __init__(self, command: list[str], log_dir: Path, pid_dir: Path | None) -> None:
        self.command = command
        self.log_dir = log_dir
        self.pid_dir = pid_dir
        self.running: list[tuple[str, subprocess.Popen]] = []
        self.terminating: list[tuple[str, subprocess.Popen]] = []
        self.next_id = 1

    def count(self) -> int:
        return len(self.running)

    def start(self, log) -> None:
        wid = f"worker-{self.next_id}"
        self.next_id += 1
        argv = [a.replace("{id}", wid) for a in self.command]
        out = open(self.log_dir / f"{wid}.log", "ab")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        if self.pid_dir:
            (self.pid_dir / wid).write_text(str(proc.pid))
        self.running.append((wid, proc))
        log(f"started {wid} pid={proc.pid}")

    def stop_newest(self, log) -> None:
        wid, proc = self.running.pop()
        proc.send_signal(signal.SIGTERM)
        self.terminating.append((wid, proc))
        log(f"SIGTERM {wid} pid={proc.pid}")

    def reap(self, log) -> None:
        for group in (self.running, self.terminating):
            for wid, proc in list(group):
                code = proc.poll()
                if code is not None:
                    group.remove((wid, proc))
                    if self.pid_dir:
                        (self.pid_dir / wid).unlink(missing_ok=True)
                    how = "drained" if group is self.terminating else "died"
                    log(f"{wid} exited code={code} ({how})")

    def stop_all(self, timeout: float, log) -> None:
        while self.running:
            self.stop_newest(log)
        deadline = time.monotonic() + timeout
        while self.terminating and time.monotonic() < deadline:
            self.reap(log)
            time.sleep(0.2)
        for wid, proc in self.terminating:
            proc.kill()
            log(f"SIGKILL {wid} (did not stop within {timeout:.0f}s)")


def main() -> int:
    ap = argparse.ArgumentParser(description="HPA-style worker autoscaler over local processes")
    ap.add_argument("--metrics", required=True, help="coordinator HTTP base URLs, comma-separated")
    ap.add_argument("--min", type=int, default=1, dest="min_replicas")
    ap.add_argument("--max", type=int, default=8, dest="max_replicas")
    ap.add_argument("--target", type=float, default=2.0, help="outstanding tasks per worker")
    ap.add_argument("--window", type=float, default=30.0, help="scale-down stabilisation, seconds")
    ap.add_argument("--tolerance", type=float, default=0.1)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    ap.add_argument("--initial", type=int, default=None, help="workers at start (default --min)")
    ap.add_argument("--log-dir", type=Path, default=Path("."), help="one log file per worker")
    ap.add_argument("--pid-dir", type=Path, default=None, help="one pid file per live worker")
    ap.add_argument("--stop-timeout", type=float, default=60.0)
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- worker command ({id} = worker id)")
    a = ap.parse_args()
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        ap.error("no worker command after --")
    if not 0 <= a.min_replicas <= a.max_replicas or a.target <= 0:
        ap.error("need 0 <= --min <= --max and --target > 0")
    urls = [u.strip() for u in a.metrics.split(",") if u.strip()]
    a.log_dir.mkdir(parents=True, exist_ok=True)

    t0 = time.monotonic()

    def log(msg: str) -> None:
        print(f"autoscaler t={time.monotonic() - t0:.1f}s {msg}", flush=True)

    stop = False

    def on_signal(signum, _frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    hpa = Hpa(a.min_replicas, a.max_replicas, a.target, a.window, a.tolerance)
    workers = Workers(command, a.log_dir, a.pid_dir)
    initial = a.min_replicas if a.initial is None else a.initial
    for _ in range(initial):
        workers.start(log)
    print(
        f"autoscaler policy min={a.min_replicas} max={a.max_replicas} target={a.target:g} "
        f"window={a.window:g}s tolerance={a.tolerance:g} interval={a.interval:g}s replicas={initial}",
        flush=True,
    )
    last_print = -math.inf
    last_line = None
    while not stop:
        workers.reap(log)
        now = time.monotonic() - t0
        seen = read_outstanding(urls, timeout=max(0.5, a.interval))
        current = workers.count()
        if seen is None:
            if last_line != "no leader" or now - last_print >= 10:
                print(f"autoscaler t={now:.1f}s no leading coordinator; replicas={current} kept", flush=True)
                last_print, last_line = now, "no leader"
        else:
            depth, leased = seen
            outstanding = depth + leased
            recommended, desired = hpa.decide(now, outstanding, current)
            action = "scale-up" if desired > current else "scale-down" if desired < current else "hold"
            line = (depth, leased, recommended, desired, current)
            if line != last_line or now - last_print >= 10:
                print(
                    f"autoscaler t={now:.1f}s queue_depth={depth:g} leased={leased:g} "
                    f"outstanding={outstanding:g} recommended={recommended} "
                    f"replicas={current}->{desired} {action}",
                    flush=True,
                )
                last_print, last_line = now, line
            while workers.count() < desired:
                workers.start(log)
            while workers.count() > desired:
                workers.stop_newest(log)
        time.sleep(a.interval)
    log("stopping: SIGTERM to every worker")
    workers.stop_all(a.stop_timeout, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
