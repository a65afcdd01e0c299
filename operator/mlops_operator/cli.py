"""The ``mlops-operator`` command: ``run`` the operator, print or write the ``crds``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import sys
from pathlib import Path

from mlops_operator import __version__

PROMETHEUS_SETTING = "MLOPS_OPERATOR_PROMETHEUS_URL"
"""The operator's default Prometheus, read by the CanaryRollout controller."""


def _crds(args: argparse.Namespace) -> int:
    from mlops_operator.api.crds import KINDS, crd_file_name, render_yaml

    rendered = {crd_file_name(k): render_yaml(k.crd()) for k in KINDS}
    if args.output is None:
        sys.stdout.write("---\n".join(rendered.values()))
        return 0
    out = Path(args.output)
    if args.check:
        stale = sorted(
            name for name, text in rendered.items() if not (out / name).is_file() or (out / name).read_text() != text
        )
        extra = sorted(p.name for p in out.glob("*.yaml") if p.name not in rendered)
        for name in stale + extra:
            print(f"{out / name}: stale; run `make crds`", file=sys.stderr)
        return 1 if stale or extra else 0
    out.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (out / name).write_text(text)
    for path in out.glob("*.yaml"):
        if path.name not in rendered:
            path.unlink()
    return 0


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """Caps glibc's malloc arenas (M_ARENA_MAX), as MALLOC_ARENA_MAX would.

    glibc gives each thread an arena of its own and seldom returns their memory; the threads that hash artifacts
    and profile datasets would each keep one, which costs tens of MB of RSS and buys nothing for an I/O-bound
    process.
    """
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl has no arenas)
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # -8 is M_ARENA_MAX


def _quiet_watch_handlers(record: logging.LogRecord) -> bool:
    # The handlers that only feed the runtime's stores run on every watch event; their successes say nothing.
    return not (record.levelno <= logging.INFO and str(record.msg).startswith("Handler 'watch-"))


def _run(args: argparse.Namespace) -> int:
    from mlops_operator.outbound import Policy

    try:
        policy = Policy.from_settings(
            file_roots=args.allow_file_root or (),
            allow_loopback=args.allow_loopback,
            allow_private=args.allow_private,
            allow_hosts=args.allow_host or (),
            allow_buckets=args.allow_bucket or (),
            receiver_hosts=args.receiver_host,
        )
    except ValueError as exc:
        print(f"mlops-operator: {exc}", file=sys.stderr)
        return 2
    if args.metrics:
        from mlops_operator.metrics import parse_bind

        try:
            parse_bind(args.metrics)
        except ValueError as exc:
            print(f"mlops-operator: {exc}", file=sys.stderr)
            return 2
    if args.prometheus_url:
        if not args.prometheus_url.startswith(("http://", "https://")):
            print(f"mlops-operator: --prometheus-url {args.prometheus_url!r}: not an http(s) URL", file=sys.stderr)
            return 2
        os.environ[PROMETHEUS_SETTING] = args.prometheus_url
    _limit_malloc_arenas()
    import kopf

    from mlops_operator.controllers import build_registry

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if not args.verbose:
        logging.getLogger("kopf.objects").addFilter(_quiet_watch_handlers)
        # A line per API request (the HTTP client logs each at INFO) costs CPU and buries what matters.
        for name in ("httpx", "httpx2", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("mlops_operator").info("outbound policy: %s", policy.describe())
    # kopf installs SIGINT and SIGTERM handlers in the main thread: both stop the watches, let running handlers
    # finish and return from run(), so the process exits with 0.
    kopf.run(
        loop=asyncio.new_event_loop(),
        registry=build_registry(tuple(args.namespace or ()), args.metrics or None, policy),
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness or None,
        standalone=True,
    )
    return 0


def _drift(args: argparse.Namespace) -> int:
    import json

    from mlops_operator.drift_batch import Options, compare_datasets, dataset_json, load_profile, table
    from mlops_operator.logic.drift import METHODS, DriftError, FeatureSettings
    from mlops_operator.outbound import Refused
    from mlops_operator.profiling import ProfileError
    from mlops_operator.storage import SourceUnreachable

    def fail(message: str) -> int:
        print(f"mlops-operator drift: {message}", file=sys.stderr)
        return 2

    datasets = list(args.datasets)
    if args.reference_profile and len(datasets) != 1:
        return fail("with --reference-profile give one dataset, the current one")
    if not args.reference_profile and len(datasets) != 2:
        return fail("give the reference dataset and the current dataset (or --reference-profile and the current one)")
    overrides: dict[str, FeatureSettings] = {}
    methods: dict[str, str] = {"numeric": "auto", "categorical": "auto"}
    for item in args.method or []:
        name, _, method = item.partition("=")
        if not method or method not in (*METHODS, "auto"):
            return fail(f"--method {item!r}: use FEATURE=METHOD, numeric=METHOD or categorical=METHOD with a "
                        f"method of {', '.join(METHODS)} or auto")  # fmt: skip
        if name in methods:
            methods[name] = method
        else:
            overrides[name] = FeatureSettings(method, overrides.get(name, FeatureSettings()).threshold)
    for item in args.threshold or []:
        name, _, value = item.partition("=")
        try:
            threshold = float(value)
        except ValueError:
            return fail(f"--threshold {item!r}: use FEATURE=NUMBER")
        overrides[name] = FeatureSettings(overrides.get(name, FeatureSettings()).method, threshold)
    options = Options(
        features=[f for f in (args.features or "").split(",") if f] or None,
        exclude=[f for f in (args.exclude or "").split(",") if f],
        prediction=args.prediction, prediction_counts=not args.prediction_apart,
        num_method=methods["numeric"], cat_method=methods["categorical"], overrides=overrides,
        drift_share=args.drift_share, multiple_testing=args.multiple_testing, min_samples=args.min_samples,
    )  # fmt: skip

    def uri(path: str) -> str:
        return path if "://" in path else f"file://{os.path.abspath(path)}"

    try:
        if args.reference_profile:
            result = compare_datasets(uri(datasets[0]), profile=load_profile(args.reference_profile), options=options)
        else:
            result = compare_datasets(uri(datasets[1]), reference=uri(datasets[0]), options=options)
    except (ProfileError, DriftError, SourceUnreachable, Refused, OSError) as exc:
        return fail(str(exc))
    if args.json:
        print(json.dumps(dataset_json(result), indent=2))
    else:
        for line in table(result):
            print(line)
    return {"Drifted": 1, "NotDrifted": 0}.get(result.verdict, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlops-operator", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mlops-operator {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator against the current kubeconfig or in-cluster config")
    run.add_argument(
        "-n", "--namespace", action="append", help="watch this namespace (repeatable); default: all namespaces"
    )
    run.add_argument(
        "--liveness",
        default="http://0.0.0.0:8081/healthz",
        help="liveness endpoint URL (default %(default)s; empty to disable)",
    )
    run.add_argument(
        "--metrics",
        default=":8080",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (default %(default)s: all interfaces; empty to "
        "disable)",
    )
    run.add_argument(
        "--prometheus-url", default=os.environ.get(PROMETHEUS_SETTING, ""), metavar="URL",
        help="the Prometheus HTTP API that canary analyses without a provider of their own query (default: "
        f"${PROMETHEUS_SETTING}; none: the operator scrapes the model servers itself)",
    )  # fmt: skip
    outbound = run.add_argument_group(
        "outbound policy",
        "what the operator may open for the URIs and addresses users write in resources (artifact sources, reference "
        "datasets): by default no files, no loopback, private, link-local or metadata addresses, not the API server",
    )
    outbound.add_argument(
        "--allow-file-root", action="append", metavar="DIR",
        help="allow file:// URIs that resolve (symlinks and .. followed) inside DIR (repeatable)",
    )  # fmt: skip
    outbound.add_argument("--allow-loopback", action="store_true", help="allow loopback addresses (127.0.0.0/8, ::1)")
    outbound.add_argument(
        "--allow-private", action="store_true",
        help="allow private addresses (10/8, 172.16/12, 192.168/16, 100.64/10, 198.18/15, fc00::/7)",
    )  # fmt: skip
    outbound.add_argument(
        "--allow-host", action="append", metavar="HOST[:PORT]|CIDR",
        help="allow this host name, address or range even when loopback, private or the API server (repeatable; "
        "link-local and metadata addresses stay refused)",
    )  # fmt: skip
    outbound.add_argument(
        "--allow-bucket", action="append", metavar="PATTERN",
        help="allow only s3:// and gs:// buckets matching PATTERN (glob; repeatable; default: any bucket the "
        "operator's credentials reach)",
    )  # fmt: skip
    outbound.add_argument(
        "--receiver-host", action="append", metavar="HOST[:PORT]|CIDR",
        help="alert receivers (webhook, Slack, PagerDuty, Alertmanager URLs) may only name these hosts (repeatable; "
        "default: any host the rest of the policy allows)",
    )  # fmt: skip
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=_run)

    crds = sub.add_parser("crds", help="generate the CustomResourceDefinitions from the API models")
    crds.add_argument("-o", "--output", help="directory to write one YAML file per kind to (default: stdout)")
    crds.add_argument("--check", action="store_true", help="with --output: fail if the files there are stale")
    crds.set_defaults(func=_crds)

    compare = sub.add_parser(
        "drift", help="compare two datasets (or a reference profile and a dataset) for drift; exit 0: no drift, "
        "1: drift, 2: error",
        description="Compares every feature of CURRENT with REFERENCE (CSV or Parquet: paths, file://, http(s)://, "
        "s3://, gs://) or with a reference profile, and prints each feature's statistic, p-value, threshold and "
        "verdict, then the dataset's. Exit code 0 when the dataset has not drifted, 1 when it has, 2 on an error "
        "or when nothing could be judged.",
    )  # fmt: skip
    compare.add_argument("datasets", nargs="+", metavar="REFERENCE CURRENT", help="the two datasets (or CURRENT "
                         "alone with --reference-profile)")  # fmt: skip
    compare.add_argument("--reference-profile", metavar="FILE",
                         help="a profile JSON (or its ConfigMap, YAML or JSON) as the reference")  # fmt: skip
    compare.add_argument("--method", action="append", metavar="FEATURE=METHOD",
                         help="the method of a feature, or numeric=METHOD / categorical=METHOD for every feature of "
                              "that type (psi, ks, jensenShannon, wasserstein, chiSquare, zTest, auto; default auto: "
                              "tests up to 1,000 samples, distances above); repeatable")  # fmt: skip
    compare.add_argument("--threshold", action="append", metavar="FEATURE=NUMBER",
                         help="a feature's threshold (a p-value for ks, chiSquare and zTest; default 0.05, and 0.1 "
                              "for the distances); repeatable")  # fmt: skip
    compare.add_argument("--features", metavar="A,B,...", help="only these features")
    compare.add_argument("--exclude", metavar="A,B,...", help="leave these features out")
    compare.add_argument("--prediction", metavar="COLUMN",
                         help="the prediction column (default: the profile's), reported apart")  # fmt: skip
    compare.add_argument("--prediction-apart", action="store_true",
                         help="do not count the prediction toward the dataset's drift share")  # fmt: skip
    compare.add_argument("--drift-share", type=float, default=0.5, metavar="SHARE",
                         help="the dataset drifts when at least this share of features does (default 0.5)")  # fmt: skip
    compare.add_argument("--multiple-testing", choices=["none", "bonferroni", "benjaminiHochberg"], default="none",
                         help="adjust the p-value methods' thresholds across features (default none)")  # fmt: skip
    compare.add_argument("--min-samples", type=int, default=1, metavar="N",
                         help="a feature with fewer current values is NoData (default 1)")  # fmt: skip
    compare.add_argument("--json", action="store_true", help="print the result as JSON")
    compare.set_defaults(func=_drift)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
