"""1,000 AlertRules on a 30 s interval: the evaluation times, how late the evaluations come and the operator's CPU
share, beside Prometheus evaluating the same PromQL rules itself in the same run.

What runs, in a fresh namespace bench-alerts-*, with an operator started for it (``--namespace``, ``--allow-loopback``:
the local Prometheus listens on 127.0.0.1) and scraped by the local Prometheus (job mlops-operator, a file
targets/<namespace>.json):

- ``--objects`` DriftMonitors (default 1,000) pointing at nothing: 4 in 5 at a ModelDeployment that does not exist
  (Ready False, DeploymentNotFound), 1 in 5 dataset monitors of a ModelVersion that does not exist (Ready False,
  ReferenceNotFound). Their controller finds that at once and looks again every 30 s, writing nothing new. Labels
  shard (0..9, 100 objects each at the default size) and tier (gold, silver, bronze); spec.minSamples spread over
  100..1099 and spec.datasetDriftShare over 0..0.99, for the rules to compare.
- ``--rules`` AlertRules (default 1,000), interval ``--interval`` (30s), ``for: 1h``, no receivers:
  - half PromQL, against the local Prometheus (spec.prometheus.address): 10 forms over the operator's own series
    (reconcile and API request rates, their latency quantiles from histograms, queue depth, objects by kind, scrape
    duration, up, a count over mlops_alert_state) with 50 thresholds each, all distinct; some hold, some never;
  - half conditions over the DriftMonitors, a third each field comparison (spec.minSamples or
    spec.datasetDriftShare against a threshold), statusCondition (Ready False; Ready False with reason
    ReferenceNotFound; Ready True) and CEL (three expressions, with thresholds); each selects one shard by matchLabels
    or matchExpressions, so every evaluation goes through the namespace's objects and judges the 100 it selects.
  ``for: 1h`` keeps every instance pending, on both sides: Prometheus sends firing alerts to the Alertmanager that
  other tests on this cluster read, pending ones it does not.
- The same PromQL rules as a Prometheus rule file (groups of 50, interval the same), written to
  $MLOPS_MONITORING_DIR/rules/<namespace>.yml and loaded (POST /-/reload) the moment the AlertRules are created;
  removed (and reloaded) at the end. Prometheus 2.42 (Debian's) evaluates them in-process: its figures are what
  GET /api/v1/rules reports (each rule's and each group's evaluationTime and lastEvaluation), read every 2 s.

Measured:

- first round: the AlertRules are all created at once, so all are due at once; the seconds from the last one's
  creation until every one has been evaluated (from the operator's mlops_alert_last_evaluation_timestamp_seconds
  of each rule, scraped every 5 s).
- steady state, after one more interval, over ``--seconds`` (default 3 intervals):
  - evaluation time: ours is mlops_alert_last_evaluation_duration_seconds of every evaluation in the window (wall
    time of the
    evaluation inside the operator: for a PromQL rule the HTTP query to Prometheus, which evaluates it, plus
    whatever else the event loop runs meanwhile; for a condition rule the selection and judging, in the loop), p50
    and p99 for PromQL and condition rules apart; beside it the operator's mlops_alert_evaluation_duration_seconds
    histogram (the bucket holding the quantile). Prometheus: each rule's evaluationTime, and each group's (50 rules
    one after the other).
  - the cycle: the seconds between two evaluations of the same rule (scheduled: the interval), p50, p99 and max,
    ours per rule and Prometheus per group; how late ours come is also the AlertRule queue wait
    (mlops_operator_queue_wait_seconds).
  - evaluations in the window against those due (rules x window / interval), and the instances each side holds.
  - CPU: utime + stime of the operator process (/proc/<pid>/stat) over the window, as a share of one core, and
    over ``--baseline`` seconds (default 2 intervals) before the rules exist (the DriftMonitors alone); the
    Prometheus process the same way, which also answers the operator's queries and whatever the other tests on
    the cluster ask of it.
  - the status writes: API requests of the operator by verb in the window, and the size of the status written;
    and what one GET /metrics takes (the quickest and the median of 10, a second apart, after the window: it is
    rendered on the event loop in one go; the local Prometheus scrapes it every 2 s).

Run (the local cluster up with its monitoring, the CRDs of crds/ applied, as `make bench` does):

    eval "$(tests/cluster/env.sh)"
    .venv/bin/python tests/bench/bench_alerts.py [--rules 1000] [--objects 1000] [--quick]

``--quick``: 20 rules over 100 objects, interval 10s, a short window: a smoke run of about a minute.
BENCH_PROFILE=<file> runs the operator under cProfile (read it with pstats). About 4 minutes at the default size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from lightkube import AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.types import on_error_retry
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench.bench_canary import create, delete_namespaces, for_each, new_namespace, pct
from tests.bench.bench_deployments import free_port, wait_live

AlertRule = create_namespaced_resource("mlops.io", "v1alpha1", "AlertRule", "alertrules")
DriftMonitor = create_namespaced_resource("mlops.io", "v1alpha1", "DriftMonitor", "driftmonitors")
Body = dict[str, Any]

SHARDS = 10
TIERS = ("gold", "silver", "bronze")
GROUP_SIZE = 50
HOLD = "1h"
POLL_SECONDS = 2.0
SCRAPE_SECONDS = 5
SCRAPES = 10
SUMMARY = {"summary": "{{ $labels.instance }}{{ $labels.name }}: {{ $value }}"}
LABELS = {"team": "bench"}


# --- what is created -------------------------------------------------------------------------------------------------


def drift_monitor(i: int) -> Body:
    """The i-th object: a DriftMonitor that never analyses (what it points at does not exist)."""
    spec: Body = {"minSamples": 100 + (i * 7919) % 1000, "datasetDriftShare": (i * 31) % 100 / 100}
    if (i // SHARDS) % 5 == 0:
        spec |= {"dataset": {"uri": "file:///nonexistent/bench.csv"}, "reference": {"modelVersion": "missing"}}
    else:
        spec |= {"deploymentRef": {"name": f"missing-{i % SHARDS}"}}
    labels = {"shard": str(i % SHARDS), "tier": TIERS[(i // SHARDS) % len(TIERS)]}
    return {"apiVersion": "mlops.io/v1alpha1", "kind": "DriftMonitor",
            "metadata": {"name": f"dm-{i:04d}", "labels": labels}, "spec": spec}  # fmt: skip


def promql(i: int, instance: str) -> str:
    """The i-th PromQL expression: one of 10 forms over the operator's own series, with the (i // 10)-th of 50
    thresholds."""
    s, k = f'instance="{instance}"', i // 10
    forms = (
        f"sum by (kind) (rate(mlops_operator_reconciles_total{{{s}}}[1m])) > {k * 0.5:g}",
        f"histogram_quantile(0.99, sum by (le, kind) (rate(mlops_operator_reconcile_duration_seconds_bucket{{{s}}}"
        f"[1m]))) > {0.002 * (k + 1):g}",
        f"sum by (verb) (rate(mlops_operator_api_requests_total{{{s}}}[2m])) > {k * 0.4:g}",
        f"histogram_quantile(0.9, sum by (le, verb) (rate(mlops_operator_api_request_duration_seconds_bucket{{{s}}}"
        f"[1m]))) > {0.002 * (k + 1):g}",
        f"max by (kind) (mlops_operator_queue_depth{{{s}}}) > {k}",
        f"max_over_time(scrape_duration_seconds{{{s}}}[1m]) > {0.002 * (k + 1):g}",
        f"avg_over_time(up{{{s}}}[5m]) < {1 - k * 0.01:g}",
        f"sum by (kind) (mlops_operator_objects{{{s}}}) > {k * 20}",
        f'count(mlops_alert_state{{{s}, state="pending"}} > {k}) > 0',
        f"sum(rate(mlops_operator_api_request_duration_seconds_sum{{{s}}}[1m])) / "
        f"sum(rate(mlops_operator_api_request_duration_seconds_count{{{s}}}[1m])) > {0.001 * (k + 1):g}",
    )
    return forms[i % len(forms)]


def condition(r: int) -> tuple[str, Body]:
    """The r-th condition rule's form and condition: a third each field, statusCondition and CEL, over one shard."""
    shard, form, variant = str(r % SHARDS), ("field", "statusCondition", "cel")[r % 3], r // 3
    selector: Body = {"kind": "DriftMonitor"}
    if r % 2:
        selector["matchExpressions"] = [{"key": "shard", "operator": "In", "values": [shard]}]
    else:
        selector["matchLabels"] = {"shard": shard}
    samples, share = 600 + (r * 37) % 500, 0.5 + (r * 13) % 50 / 100
    if form == "field":
        compared = ({"field": "spec.minSamples", "op": ">", "value": samples} if variant % 2 == 0 else
                    {"field": "spec.datasetDriftShare", "op": ">=", "value": share})  # fmt: skip
        return form, {"selector": selector, "field": compared}
    if form == "statusCondition":
        held = ({"type": "Ready", "status": "False", "reason": "ReferenceNotFound"},
                {"type": "Ready", "status": "False"}, {"type": "Ready", "status": "True"})[variant % 3]  # fmt: skip
        return form, {"selector": selector, "statusCondition": held}
    expression = (
        f"self.spec.minSamples > {samples} && self.metadata.labels.tier == 'gold'",
        "self.status.conditions.exists(c, c.type == 'Ready' && c.reason == 'ReferenceNotFound')",
        f"has(self.spec.deploymentRef) && self.spec.datasetDriftShare >= {share:g}",
    )[variant % 3]
    return form, {"selector": selector, "cel": expression}


def alert_rule(name: str, interval: str, spec: Body) -> Body:
    return {"apiVersion": "mlops.io/v1alpha1", "kind": "AlertRule", "metadata": {"name": name},
            "spec": {**spec, "interval": interval, "for": HOLD, "labels": LABELS, "annotations": SUMMARY}}  # fmt: skip


def rule_file(rules: list[tuple[str, str]], interval: str, prefix: str) -> str:
    """The PromQL rules as a Prometheus rule file (JSON is YAML), GROUP_SIZE rules a group."""
    groups = [
        {"name": f"{prefix}-{g // GROUP_SIZE:02d}", "interval": interval,
         "rules": [{"alert": name, "expr": expr, "for": HOLD, "labels": {"severity": "warning", **LABELS},
                    "annotations": SUMMARY} for name, expr in rules[g : g + GROUP_SIZE]]}
        for g in range(0, len(rules), GROUP_SIZE)
    ]  # fmt: skip
    return json.dumps({"groups": groups}, indent=1)


# --- the processes ---------------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Operator:
    proc: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    @classmethod
    def start(cls, namespace: str, profile: str | None) -> Operator:
        port, metrics_port = free_port(), free_port()
        liveness = f"http://127.0.0.1:{port}/healthz"
        log = Path(tempfile.gettempdir()) / f"{namespace}-operator.log"
        python = [sys.executable, *(["-m", "cProfile", "-o", profile] if profile else [])]
        # Every rule names its Prometheus: the operator's default stays unset.
        env = {k: v for k, v in os.environ.items() if k != "MLOPS_OPERATOR_PROMETHEUS_URL"}
        with log.open("w") as out:
            proc = subprocess.Popen(
                [*python, "-m", "mlops_operator", "run", "--namespace", namespace, "--liveness", liveness,
                 "--metrics", f"127.0.0.1:{metrics_port}", "--allow-loopback"],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        wait_live(proc, liveness, log)
        return cls(proc, log, metrics_port)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as resp:
            return str(resp.read().decode())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Prometheus:
    """The local Prometheus (tests/cluster/monitoring.sh): its rule files, its scrape targets, its process."""

    def __init__(self, namespace: str) -> None:
        self.url = os.environ.get("MLOPS_PROMETHEUS_URL", "")
        directory = os.environ.get("MLOPS_MONITORING_DIR", "")
        if not self.url or not directory:
            raise SystemExit('MLOPS_PROMETHEUS_URL / MLOPS_MONITORING_DIR unset: eval "$(tests/cluster/env.sh)"')
        self.dir = Path(directory)
        self.rules = self.dir / "rules" / f"{namespace}.yml"
        self.target = self.dir / "targets" / f"{namespace}.json"
        self.pid = int((self.dir / "prometheus.pid").read_text().split()[0])

    def version(self) -> str:
        with urllib.request.urlopen(f"{self.url}/api/v1/status/buildinfo", timeout=10) as resp:
            return str(json.load(resp)["data"]["version"])

    @staticmethod
    def _write(path: Path, text: str) -> None:
        # Whole or not at all: Prometheus may read the file at any moment.
        part = path.with_name(path.name + ".part")
        part.write_text(text)
        part.rename(path)

    def scrape(self, port: int) -> None:
        self._write(self.target, json.dumps([{"targets": [f"127.0.0.1:{port}"]}]))

    def load(self, text: str) -> None:
        self._write(self.rules, text)
        self.reload()

    def reload(self) -> None:
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=30) as resp:
            assert resp.status == 200, resp.status

    def clean(self) -> None:
        had_rules = self.rules.exists()
        self.rules.unlink(missing_ok=True)
        self.target.unlink(missing_ok=True)
        if had_rules:
            self.reload()


# --- what is recorded ------------------------------------------------------------------------------------------------


def when(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@dataclass
class Evaluation:
    at: float
    seconds: float
    instances: int
    size: int = 0
    """Bytes of the status written with it (ours)."""


@dataclass
class Ours:
    """Every evaluation of the bench's AlertRules, from the operator's per-rule gauges of the last evaluation's time
    and duration (scraped every SCRAPE_SECONDS: an evaluation that changes nothing writes no status), and every
    status write, from the watch."""

    evaluations: dict[str, dict[float, Evaluation]] = field(default_factory=lambda: defaultdict(dict))
    ready: dict[str, str] = field(default_factory=dict)
    """Each rule's last Ready reason."""
    instances: dict[str, int] = field(default_factory=dict)
    """Each rule's instances, as its status last said."""
    writes: list[tuple[float, int]] = field(default_factory=list)
    """(when seen, bytes of the status) of every status write."""
    sizes: dict[str, int] = field(default_factory=dict)

    async def follow(self, client: AsyncClient, namespace: str) -> None:
        obj: Any
        async for _, obj in client.watch(AlertRule, namespace=namespace, on_error=on_error_retry):
            status: Body = obj.status or {}
            name: str = obj.metadata.name
            ready: Body = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
            self.ready[name] = str(ready.get("reason"))
            self.instances[name] = int(status.get("instances") or 0)
            size = len(json.dumps(status))
            self.sizes[name] = size
            self.writes.append((time.time(), size))

    async def scrape(self, operator: Operator, namespace: str) -> None:
        while True:
            with contextlib.suppress(OSError):
                found = samples(await asyncio.to_thread(operator.metrics))
                durations = {dict(labels).get("rule"): v for (n, labels), v in found.items()
                             if n == "mlops_alert_last_evaluation_duration_seconds"
                             and dict(labels).get("namespace") == namespace}  # fmt: skip
                for (n, labels), at in found.items():
                    rule = dict(labels)
                    if n != "mlops_alert_last_evaluation_timestamp_seconds" or rule.get("namespace") != namespace:
                        continue
                    name = rule["rule"]
                    if at not in self.evaluations[name]:
                        self.evaluations[name][at] = Evaluation(at, float(durations.get(name) or 0),
                                                                self.instances.get(name, 0))  # fmt: skip
            # Each scrape costs the operator a render of its /metrics (tens of ms): every 5 s, well within a 30 s
            # interval, so that no evaluation is missed and the figures are not the bench's own load.
            await asyncio.sleep(SCRAPE_SECONDS)


@dataclass
class Theirs:
    """Every rule and group evaluation of our rule file that Prometheus reported, read every POLL_SECONDS."""

    rules: dict[str, dict[float, Evaluation]] = field(default_factory=lambda: defaultdict(dict))
    groups: dict[str, dict[float, Evaluation]] = field(default_factory=lambda: defaultdict(dict))

    async def follow(self, prometheus: Prometheus) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with session.get(f"{prometheus.url}/api/v1/rules", params={"type": "alert"}) as resp:
                        answer = await resp.json()
                    for group in answer["data"]["groups"]:
                        if group["file"] == str(prometheus.rules):
                            self._record(group)
                await asyncio.sleep(POLL_SECONDS)

    def _record(self, group: Body) -> None:
        if group["lastEvaluation"].startswith("0001-"):
            return
        at = when(group["lastEvaluation"])
        self.groups[group["name"]][at] = Evaluation(at, float(group["evaluationTime"]), 0)
        for rule in group["rules"]:
            if not rule["lastEvaluation"].startswith("0001-"):
                at = when(rule["lastEvaluation"])
                self.rules[rule["name"]][at] = Evaluation(at, float(rule["evaluationTime"]), len(rule["alerts"]))


def within(runs: dict[str, dict[float, Evaluation]], start: float, end: float,
           names: Iterable[str] | None = None) -> list[Evaluation]:  # fmt: skip
    keys = runs.keys() if names is None else names
    return [e for k in keys for e in runs.get(k, {}).values() if start <= e.at <= end]


def periods(runs: dict[str, dict[float, Evaluation]], start: float, end: float) -> list[float]:
    """The seconds between consecutive evaluations of the same rule or group, for those ending in the window."""
    out = []
    for evaluations in runs.values():
        times = sorted(evaluations)
        out += [b - a for a, b in itertools.pairwise(times) if start <= b <= end]
    return out


def latest(runs: dict[str, dict[float, Evaluation]], names: Iterable[str]) -> list[Evaluation]:
    return [runs[n][max(runs[n])] for n in names if runs.get(n)]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def delta(before: dict[Any, float], after: dict[Any, float], name: str, **labels: str) -> dict[str, float]:
    """The change of every series of ``name`` carrying ``labels``, by its remaining labels (le for buckets)."""
    out: defaultdict[str, float] = defaultdict(float)
    for (n, pairs), value in after.items():
        have = dict(pairs)
        if n == name and all(have.get(k) == v for k, v in labels.items()):
            rest = ",".join(f"{k}={v}" for k, v in pairs if k not in labels)
            out[rest] += value - before.get((n, pairs), 0.0)
    return dict(out)


def bucket(buckets: dict[str, float], q: float) -> str:
    """The bucket of a histogram's change (``delta`` of its _bucket) holding the q-quantile, as "<= le"."""
    bounds = sorted(((float(k.removeprefix("le=")), v) for k, v in buckets.items()), key=lambda b: b[0])
    total = bounds[-1][1] if bounds else 0
    if total <= 0:
        return "-"
    le = next(le for le, count in bounds if count >= q * total)
    return f"<= {le * 1000:g} ms" if not math.isinf(le) else f"> {bounds[-2][0]:g} s"


def ms(values: list[float], q: float) -> str:
    return f"{pct(values, q) * 1000:.1f}" if values else "-"


def seconds(values: list[float], q: float) -> str:
    return f"{pct(values, q):.1f}" if values else "-"


# --- the run ---------------------------------------------------------------------------------------------------------


async def wait_until(what: str, check: Any, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(1)


async def run(args: argparse.Namespace) -> None:
    interval = f"{args.interval}s"
    window = args.seconds or 3 * args.interval
    baseline = args.baseline if args.baseline is not None else 2 * args.interval
    client = AsyncClient()
    namespace = await new_namespace(client, f"bench-alerts-{uuid.uuid4().hex[:6]}")
    prometheus = Prometheus(namespace)
    op: Operator | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        op = Operator.start(namespace, os.environ.get("BENCH_PROFILE") or None)
        prometheus.scrape(op.metrics_port)
        instance = f"127.0.0.1:{op.metrics_port}"

        # The objects, and the operator with them alone.
        started = time.monotonic()
        await for_each([drift_monitor(i) for i in range(args.objects)],
                       lambda body: create(client, DriftMonitor, body, namespace))  # fmt: skip
        reasons: Counter[str] = Counter()

        async def settled() -> bool:
            reasons.clear()
            dm: Any
            async for dm in client.list(DriftMonitor, namespace=namespace):
                ready = [c for c in (dm.status or {}).get("conditions") or [] if c.get("type") == "Ready"]
                reasons[ready[0].get("reason") if ready else "none"] += 1
            return reasons["none"] == 0

        await wait_until(f"{args.objects} DriftMonitors with a Ready condition", settled, 300)
        objects_took = time.monotonic() - started
        await asyncio.sleep(5)
        cpu0, prom0, t0 = cpu_seconds(op.proc.pid), cpu_seconds(prometheus.pid), time.monotonic()
        await asyncio.sleep(baseline)
        elapsed = time.monotonic() - t0
        idle = (cpu_seconds(op.proc.pid) - cpu0) / elapsed
        prom_idle = (cpu_seconds(prometheus.pid) - prom0) / elapsed

        # The rules, ours and Prometheus's at once.
        half = args.rules // 2
        exprs = [(f"promql-{i:04d}", promql(i, instance)) for i in range(half)]
        conditions = [(f"cond-{r:04d}", *condition(r)) for r in range(args.rules - half)]
        forms = Counter(form for _, form, _ in conditions)
        bodies = [alert_rule(name, interval, {"expr": expr, "prometheus": {"address": prometheus.url}})
                  for name, expr in exprs]  # fmt: skip
        bodies += [alert_rule(name, interval, {"condition": cond}) for name, _, cond in conditions]
        ours, theirs = Ours(), Theirs()
        tasks = [asyncio.create_task(ours.follow(client, namespace)), asyncio.create_task(theirs.follow(prometheus)),
                 asyncio.create_task(ours.scrape(op, namespace))]  # fmt: skip
        prometheus.load(rule_file(exprs, interval, namespace))
        created_at = time.time()
        await for_each(bodies, lambda body: create(client, AlertRule, body, namespace))
        created = time.time()

        async def all_evaluated() -> bool:
            return len(ours.evaluations) == len(bodies)

        await wait_until(f"{len(bodies)} first evaluations", all_evaluated, 900)
        firsts = [min(runs) for runs in ours.evaluations.values()]
        first_round = max(firsts) - created

        # Steady state.
        await asyncio.sleep(args.interval)
        metrics0, cpu0, prom0 = samples(op.metrics()), cpu_seconds(op.proc.pid), cpu_seconds(prometheus.pid)
        start = time.time()
        await asyncio.sleep(window)
        end = time.time()
        metrics1, cpu1, prom1 = samples(op.metrics()), cpu_seconds(op.proc.pid), cpu_seconds(prometheus.pid)
        share, prom_share = (cpu1 - cpu0) / (end - start), (prom1 - prom0) / (end - start)
        await asyncio.sleep(2 * POLL_SECONDS)  # Prometheus's last evaluations of the window, read
        # What one /metrics costs: the loop renders it in one go, so the quickest of several answers (one that
        # found the loop idle) is about its CPU.
        scrapes = []
        for _ in range(SCRAPES):
            t0 = time.monotonic()
            scrape_bytes = len(op.metrics())
            scrapes.append(time.monotonic() - t0)
            await asyncio.sleep(1)
    finally:
        for task in tasks:
            task.cancel()
        prometheus.clean()
        if op is not None:
            op.stop()
        await delete_namespaces(client, [namespace])

    # The figures.
    promql_names, condition_names = [n for n, _ in exprs], [n for n, _, _ in conditions]
    by_form = {f: [n for n, form, _ in conditions if form == f] for f in forms}
    ours_promql = within(ours.evaluations, start, end, promql_names)
    ours_cond = within(ours.evaluations, start, end, condition_names)
    theirs_rules, theirs_groups = within(theirs.rules, start, end), within(theirs.groups, start, end)
    due = len(bodies) * (end - start) / args.interval
    due_theirs = len(exprs) * (end - start) / args.interval
    held = {f: [e.instances for e in latest(ours.evaluations, names)] for f, names in by_form.items()}
    held_promql = sum(e.instances for e in latest(ours.evaluations, promql_names))
    held_theirs = sum(e.instances for e in latest(theirs.rules, promql_names))
    evaluations = delta(metrics0, metrics1, "mlops_alert_evaluation_duration_seconds_bucket")
    queue = delta(metrics0, metrics1, "mlops_operator_queue_wait_seconds_bucket", kind="AlertRule")
    reconciles = delta(metrics0, metrics1, "mlops_operator_reconcile_duration_seconds_bucket", kind="AlertRule")
    requests = delta(metrics0, metrics1, "mlops_operator_api_requests_total")
    status_kb = [ours.sizes[n] / 1024 for n in condition_names if n in ours.sizes]
    written_kb = sum(size for at, size in ours.writes if start <= at <= end) / 1024
    per_minute = 60 / (end - start)
    not_ready = Counter(r for r in ours.ready.values() if r != "Evaluated")

    print(f"alert rules: {len(bodies)} AlertRules ({len(exprs)} PromQL, {len(conditions)} conditions over "
          f"{args.objects} DriftMonitors), interval {interval}, for {HOLD} (instances stay pending), no receivers; "
          f"peer: Prometheus {prometheus.version()} evaluating the same {len(exprs)} PromQL rules "
          f"({math.ceil(len(exprs) / GROUP_SIZE)} groups of up to {GROUP_SIZE}, interval {interval})")  # fmt: skip
    print(
        f"  objects: {args.objects} DriftMonitors in {SHARDS} shards, Ready False "
        f"({', '.join(f'{n} {r}' for r, n in reasons.most_common())}), created and settled in {objects_took:.0f} s"
    )
    print(f"  condition rules: {', '.join(f'{n} {f}' for f, n in forms.items())}; each selects one shard "
          f"({args.objects // SHARDS} of the {args.objects} objects); instances held per rule (mean/max): "
          + ", ".join(f"{f} {sum(v) / max(len(v), 1):.0f}/{max(v, default=0)}" for f, v in held.items())
          + f"; status per rule {sum(status_kb) / max(len(status_kb), 1):.1f} KB mean, "
          f"{max(status_kb, default=0):.1f} KB max")  # fmt: skip
    print(
        f"  PromQL rules: instances held {held_promql} (Prometheus, same rules: {held_theirs}); Ready not "
        f"Evaluated: {dict(not_ready) or 'none'}"
    )
    print(f"  first round (all {len(bodies)} due at once, just created, in {created - created_at:.1f} s): every "
          f"rule evaluated {first_round:.1f} s after the last was created (first to last evaluation "
          f"{max(firsts) - min(firsts):.1f} s)")  # fmt: skip
    print(
        f"  steady state over {end - start:.0f} s ({(end - start) / args.interval:.0f} intervals), from "
        f"{start - created:.0f} s after creation:"
    )
    print(f"    {'':26} {'evaluations':>12} {'eval p50 ms':>12} {'eval p99 ms':>12} {'cycle p50 s':>12} "
          f"{'cycle p99 s':>12} {'cycle max s':>12}")  # fmt: skip

    def row(label: str, runs: list[Evaluation], goal: float, cycle: list[float]) -> None:
        took = [e.seconds for e in runs]
        print(f"    {label:26} {f'{len(runs)}/{goal:.0f}':>12} {ms(took, 50):>12} {ms(took, 99):>12} "
              f"{seconds(cycle, 50):>12} {seconds(cycle, 99):>12} "
              f"{f'{max(cycle):.1f}' if cycle else '-':>12}")  # fmt: skip

    our_cycles = periods(ours.evaluations, start, end)
    row("ours, PromQL rules", ours_promql, due_theirs,
        periods({n: ours.evaluations[n] for n in promql_names}, start, end))  # fmt: skip
    row("ours, condition rules", ours_cond, due - due_theirs,
        periods({n: ours.evaluations[n] for n in condition_names}, start, end))  # fmt: skip
    for form, names in by_form.items():
        row(f"  of which {form}", within(ours.evaluations, start, end, names), (due - due_theirs) * len(names)
            / max(len(condition_names), 1), periods({n: ours.evaluations[n] for n in names}, start, end))  # fmt: skip
    row("Prometheus, per rule", theirs_rules, due_theirs, periods(theirs.rules, start, end))
    row(f"Prometheus, per group ({GROUP_SIZE})", theirs_groups, due_theirs / len(exprs) * len(theirs.groups),
        periods(theirs.groups, start, end))  # fmt: skip
    print(f"    ours, all rules: cycle p99 {seconds(our_cycles, 99)} s; mlops_alert_evaluation_duration_seconds p50 "
          f"{bucket(evaluations, 0.5)}, p99 {bucket(evaluations, 0.99)}; AlertRule reconcile (the evaluation, "
          f"the status write) p50 {bucket(reconciles, 0.5)}, p99 {bucket(reconciles, 0.99)}; queue wait p50 "
          f"{bucket(queue, 0.5)}, p99 {bucket(queue, 0.99)}")  # fmt: skip
    per_evaluation = (share - idle) * (end - start) / max(len(ours_promql + ours_cond), 1)
    print(f"    operator CPU {share:.1%} of one core ({per_evaluation * 1000:.2f} ms a rule evaluation above the "
          f"baseline); the same operator with the {args.objects} DriftMonitors and no rule, over {baseline:.0f} s: "
          f"{idle:.1%}")  # fmt: skip
    print(
        f"    Prometheus process CPU {prom_share:.1%} of one core (before the rules: {prom_idle:.1%}; it also "
        "answers the operator's queries and the other tests')"
    )
    print("    operator API requests a minute: "
          + ", ".join(f"{k or 'all'} {v * per_minute:.0f}" for k, v in sorted(requests.items()) if v)
          + f"; status written {written_kb * per_minute / 1024:.1f} MB a minute (whole statuses; a merge patch "
          f"sends the changed fields)")  # fmt: skip
    print(f"    operator /metrics: {scrape_bytes / 1024:.0f} KB, answered in {min(scrapes) * 1000:.0f} ms at best, "
          f"{pct(scrapes, 50) * 1000:.0f} ms p50 of {SCRAPES} (rendered on the event loop; scraped every "
          "2 s)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rules", type=int, default=1000, help="AlertRules, half PromQL (default %(default)s)")
    parser.add_argument("--objects", type=int, default=1000, help="DriftMonitors (default %(default)s)")
    parser.add_argument("--interval", type=int, default=30, help="seconds between evaluations (default %(default)s)")
    parser.add_argument("--seconds", type=float, help="the steady window (default 3 intervals)")
    parser.add_argument("--baseline", type=float, help="the window before the rules (default 2 intervals)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 rules, 100 objects, interval 10s")
    args = parser.parse_args()
    if args.quick:
        args.rules, args.objects, args.interval = 20, 100, 10
        args.baseline = args.baseline if args.baseline is not None else 5
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
