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
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=_run)

    crds = sub.add_parser("crds", help="generate the CustomResourceDefinitions from the API models")
    crds.add_argument("-o", "--output", help="directory to write one YAML file per kind to (default: stdout)")
    crds.add_argument("--check", action="store_true", help="with --output: fail if the files there are stale")
    crds.set_defaults(func=_crds)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
