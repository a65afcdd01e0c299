"""The prometheus provider: the PromQL it writes for each metric, and what it makes of a real HTTP server that
answers as Prometheus' API does (values, samples, credentials, errors that name no secret, the outbound policy)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mlops_operator.api.canaryrollout import AnalysisMetric
from mlops_operator.api.common import PrometheusProvider, SecretKeyRef
from mlops_operator.logic.analysis import Values
from mlops_operator.logic.measure import Reading, prediction_shift
from mlops_operator.outbound import Policy
from mlops_operator.providers import Target
from mlops_operator.providers.prometheus import Prometheus, QueryError, promql, range_of, value_of

SECRET = "s3cr3t-token-9f2b"
PASSWORD = "pa55-word-71c3"
TENANT = "tenant-from-secret-4d1e"
SECRETS = {("prom", "token"): SECRET, ("prom", "user"): "analyst", ("prom", "password"): PASSWORD,
           ("prom", "tenant"): TENANT + "\n"}  # fmt: skip
TARGET = Target(namespace="team-a", deployment="fraud", model="fraud", canary="v2", stable="v1", prediction="label")
START = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
END = START + dt.timedelta(seconds=60)
ALLOW = Policy(allow_loopback=True)


def metric(**spec: Any) -> AnalysisMetric:
    return AnalysisMetric.model_validate({"name": "m", "max": 1, **spec})


LATENCY = "sum by (le) (rate(mlops_server_request_duration_seconds_bucket{S}[60s])))"


def sel(version: str) -> str:
    return f'namespace="team-a",model="fraud",version="{version}"'


# --- PromQL -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("builtin", "expected"),
    [
        ("errorRate", '(sum(increase(mlops_server_requests_total{S,code=~"5.."}[60s])) or vector(0))'
                      " / sum(increase(mlops_server_requests_total{S}[60s]))"),
        ("clientErrorRate", '(sum(increase(mlops_server_requests_total{S,code=~"4.."}[60s])) or vector(0))'
                            " / sum(increase(mlops_server_requests_total{S}[60s]))"),
        ("requestRate", "sum(rate(mlops_server_requests_total{S}[60s])) or vector(0)"),
        ("latencyP50", f"histogram_quantile(0.5, {LATENCY}"),
        ("latencyP95", f"histogram_quantile(0.95, {LATENCY}"),
        ("latencyP99", f"histogram_quantile(0.99, {LATENCY}"),
        ("predictionShift", 'sum by (bin) (increase(mlops_server_feature_bin_total{S,feature="label"}[60s]))'),
    ],
)  # fmt: skip
def test_each_builtin_is_promql_over_the_servers_series(builtin: str, expected: str) -> None:
    assert promql(metric(builtin=builtin), TARGET, "v2", "60s") == expected.replace("S", sel("v2"))


def test_label_values_are_quoted_as_promql_strings() -> None:
    odd = Target(namespace="ns", deployment="d", model='a"b\\c', canary="v2", stable=None)
    assert 'model="a\\"b\\\\c"' in promql(metric(builtin="requestRate"), odd, "v2", "60s")


def test_a_query_gets_its_placeholders_with_or_without_spaces() -> None:
    query = 'sum(rate(x{namespace="{{namespace}}",model="{{ model }}",version="{{  version}}"}[{{ interval }}]))'
    assert promql(metric(query=query), TARGET, "v1", "10s") == (
        'sum(rate(x{namespace="team-a",model="fraud",version="v1"}[10s]))'
    )


def test_an_unknown_placeholder_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown placeholder \{\{ pod \}\}"):
        promql(metric(query="up{pod='{{ pod }}', version='{{ version }}'}"), TARGET, "v1", "60s")


def test_ranges_are_whole_seconds_at_least_the_duration() -> None:
    assert [range_of(s) for s in (60, 60.0004, 60.4, 0.25, 90)] == ["60s", "60s", "61s", "1s", "90s"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"resultType": "scalar", "result": [1, "0.5"]}, 0.5),
        ({"resultType": "vector", "result": [{"metric": {}, "value": [1, "2"]}]}, 2.0),
        ({"resultType": "vector", "result": []}, None),
        ({"resultType": "vector", "result": [{"metric": {}, "value": [1, "NaN"]}]}, None),
    ],
)
def test_one_number_or_no_data(data: dict[str, Any], expected: float | None) -> None:
    assert value_of(data) == expected


def test_a_range_vector_is_not_one_number() -> None:
    with pytest.raises(QueryError, match="returned a matrix; it must return one number"):
        value_of({"resultType": "matrix", "result": []})


# --- a Prometheus on loopback -----------------------------------------------------------------------------------------


@dataclass
class FakePrometheus:
    """Answers /api/v1/query and /api/v1/query_range with ``answer(path, form)``: (HTTP status, JSON body)."""

    answer: Callable[[str, dict[str, str]], tuple[int, Any]]
    requests: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    """(path, form, headers) of every request."""
    urls: list[str] = field(default_factory=list)
    """The method and URL of every request."""
    delay: float = 0.0
    """Seconds before each answer."""

    async def handle(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()} | dict(request.query)
        self.requests.append((request.path, form, dict(request.headers)))
        self.urls.append(f"{request.method} {request.path_qs}")
        await asyncio.sleep(self.delay)
        status, body = self.answer(request.path, form)
        return web.json_response(body, status=status)


@asynccontextmanager
async def serving(prometheus: FakePrometheus, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", prometheus.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def read_secret(namespace: str, ref: SecretKeyRef) -> str:
    assert namespace == "team-a"
    return SECRETS[(ref.name, ref.key)]


def ok(result_type: str, result: Any) -> tuple[int, Any]:
    return 200, {"status": "success", "data": {"resultType": result_type, "result": result}}


def vector(*values: str) -> tuple[int, Any]:
    return ok("vector", [{"metric": {"pod": f"p{i}"}, "value": [END.timestamp(), v]} for i, v in enumerate(values)])


def measure(
    answer: Callable[[str, dict[str, str]], tuple[int, Any]],
    metrics: list[AnalysisMetric],
    spec: dict[str, Any] | None = None,
    policy: Policy = ALLOW,
    target: Target = TARGET,
) -> tuple[dict[str, Values], FakePrometheus]:
    server = FakePrometheus(answer)

    async def run() -> dict[str, Values]:
        async with serving(server) as address:
            provider = Prometheus(PrometheusProvider.model_validate({"address": address, **(spec or {})}), "team-a",
                                  read_secret, policy)  # fmt: skip
            return await provider.measure("team-a/fraud", target, metrics, START, END)

    return asyncio.run(run()), server


def by_version(path: str, form: dict[str, str]) -> tuple[int, Any]:
    """The candidate has 3 % errors and samples 0.02, 0.04; the stable 1 % and 0.01, NaN, 0.01."""
    canary = 'version="v2"' in form["query"]
    if path == "/api/v1/query":
        return vector("0.03" if canary else "0.01")
    values = [["1", "0.02"], ["2", "0.04"]] if canary else [["1", "0.01"], ["2", "NaN"], ["3", "0.01"]]
    return ok("matrix", [{"metric": {}, "values": values}])


def test_values_and_samples_of_both_versions() -> None:
    compared = metric(name="errors", builtin="errorRate", compare={"step": "20s"})
    got, server = measure(by_version, [compared])
    assert got == {"errors": Values(canary=0.03, stable=0.01, canary_samples=(0.02, 0.04), stable_samples=(0.01, 0.01))}
    instants = [form for path, form, _ in server.requests if path == "/api/v1/query"]
    assert {form["time"] for form in instants} == {f"{END.timestamp():.3f}"}
    assert all("[60s]" in form["query"] for form in instants)
    ranges = [form for path, form, _ in server.requests if path == "/api/v1/query_range"]
    # Samples tile the window: the first covers the step after its start.
    assert {(f["start"], f["end"], f["step"]) for f in ranges} == {
        (f"{(START + dt.timedelta(seconds=20)).timestamp():.3f}", f"{END.timestamp():.3f}", "20")
    }
    assert all("[20s]" in form["query"] for form in ranges)


def test_a_query_is_asked_once_per_version_and_a_scalar_is_a_number() -> None:
    got, server = measure(lambda path, form: ok("scalar", [1, "4.5"]), [metric(query='x{v="{{ version }}"}')])
    assert got["m"] == Values(canary=4.5, stable=4.5)
    assert sorted(form["query"] for _, form, _ in server.requests) == ['x{v="v1"}', 'x{v="v2"}']


def test_without_a_stable_version_only_the_candidate_is_measured() -> None:
    alone = Target(namespace="team-a", deployment="fraud", model="fraud", canary="v2", stable=None)
    got, server = measure(by_version, [metric(builtin="errorRate")], target=alone)
    assert got["m"] == Values(canary=0.03) and len(server.requests) == 1


def test_prediction_shift_is_the_distance_between_the_versions_bins() -> None:
    counts = {"v2": {"0": "10", "1": "30"}, "v1": {"0": "30", "1": "10"}}

    def bins(path: str, form: dict[str, str]) -> tuple[int, Any]:
        version = "v2" if 'version="v2"' in form["query"] else "v1"
        return ok("vector", [{"metric": {"bin": b}, "value": [1, n]} for b, n in counts[version].items()])

    got, _ = measure(bins, [metric(builtin="predictionShift")])
    expected = prediction_shift(Reading(bins={("label", "0"): 10, ("label", "1"): 30}),
                                Reading(bins={("label", "0"): 30, ("label", "1"): 10}), "label")  # fmt: skip
    assert got["m"] == Values(canary=expected) and expected is not None and expected > 0.3


def test_an_empty_answer_is_no_data() -> None:
    got, _ = measure(lambda path, form: vector(), [metric(builtin="latencyP99")])
    assert got["m"] == Values()


def test_several_series_are_an_error_naming_how_many() -> None:
    got, _ = measure(lambda path, form: vector("1", "2", "3"), [metric(query="x")])
    assert got["m"].error is not None
    assert "returned 3 series; it must return one number" in got["m"].error


def test_prometheus_errors_are_reported_with_their_message() -> None:
    body = {"status": "error", "errorType": "bad_data", "error": 'parse error: unexpected "}"'}
    got, _ = measure(lambda path, form: (400, body), [metric(query="x}")])
    assert got["m"].error is not None
    assert got["m"].error.startswith("HTTP 400 (bad_data) from http://127.0.0.1:")
    assert got["m"].error.endswith('/api/v1/query: parse error: unexpected "}"')


def test_an_unknown_placeholder_is_the_metrics_error_and_nothing_is_asked() -> None:
    got, server = measure(by_version, [metric(query="x{{ nope }}"), metric(name="ok", builtin="errorRate")])
    assert got["m"].error is not None and "unknown placeholder {{ nope }}" in got["m"].error
    assert got["ok"].canary == 0.03
    assert all("nope" not in form["query"] for _, form, _ in server.requests)


# --- credentials ------------------------------------------------------------------------------------------------------


def test_bearer_token_and_headers_are_sent_with_the_secrets_values() -> None:
    spec = {
        "bearerTokenSecretRef": {"name": "prom", "key": "token"},
        "headers": [{"name": "X-Scope-OrgID", "valueFrom": {"name": "prom", "key": "tenant"}},
                    {"name": "X-Plain", "value": "plain"}],
    }  # fmt: skip
    _, server = measure(by_version, [metric(builtin="errorRate")], spec)
    for _, _, headers in server.requests:
        assert headers["Authorization"] == f"Bearer {SECRET}"
        assert headers["X-Scope-OrgID"] == TENANT  # the Secret's trailing newline stripped
        assert headers["X-Plain"] == "plain"


def test_basic_auth_is_sent_from_the_secrets() -> None:
    spec = {"basicAuth": {"usernameSecretRef": {"name": "prom", "key": "user"},
                          "passwordSecretRef": {"name": "prom", "key": "password"}}}  # fmt: skip
    _, server = measure(by_version, [metric(builtin="errorRate")], spec)
    expected = "Basic " + base64.b64encode(f"analyst:{PASSWORD}".encode()).decode()
    assert {headers["Authorization"] for _, _, headers in server.requests} == {expected}


def test_errors_never_carry_a_secret_even_when_the_server_echoes_it() -> None:
    spec = {
        "bearerTokenSecretRef": {"name": "prom", "key": "token"},
        "headers": [{"name": "X-Scope-OrgID", "valueFrom": {"name": "prom", "key": "tenant"}}],
    }

    def echo(path: str, form: dict[str, str]) -> tuple[int, Any]:
        return 401, {"status": "error", "errorType": "unauthorized", "error": f"bad token Bearer {SECRET} for {TENANT}"}

    got, _ = measure(echo, [metric(builtin="errorRate")], spec)
    error = got["m"].error
    assert error is not None and "HTTP 401 (unauthorized)" in error and "<redacted>" in error
    assert SECRET not in error and TENANT not in error


def test_a_secret_that_cannot_be_read_is_named() -> None:
    got, server = measure(by_version, [metric(builtin="errorRate")],
                          {"bearerTokenSecretRef": {"name": "prom", "key": "missing"}})  # fmt: skip
    assert got["m"].error is not None
    assert got["m"].error.startswith("bearerTokenSecretRef: cannot read key missing of Secret prom")
    assert server.requests == []


def test_credentials_in_the_address_are_refused_without_quoting_them() -> None:
    provider = Prometheus(PrometheusProvider(address=f"http://admin:{PASSWORD}@127.0.0.1:9"), "team-a",
                          read_secret, ALLOW)  # fmt: skip
    got = asyncio.run(provider.measure("k", TARGET, [metric(builtin="errorRate")], START, END))
    error = got["m"].error
    assert error is not None and "carries credentials" in error and PASSWORD not in error and "admin" not in error


# --- connections ------------------------------------------------------------------------------------------------------


def test_a_policy_that_refuses_loopback_refuses_before_connecting() -> None:
    got, server = measure(by_version, [metric(builtin="errorRate")],
                          {"bearerTokenSecretRef": {"name": "prom", "key": "token"}}, policy=Policy())  # fmt: skip
    error = got["m"].error
    assert error is not None and error.startswith("refused by the operator's outbound policy: ")
    assert "loopback address" in error and SECRET not in error
    assert server.requests == []


def test_a_closed_port_is_an_error_naming_the_address() -> None:
    provider = Prometheus(PrometheusProvider(address="http://127.0.0.1:9/prom/", timeout="2s",
                                             bearerTokenSecretRef=SecretKeyRef(name="prom", key="token")),
                          "team-a", read_secret, ALLOW)  # fmt: skip
    got = asyncio.run(provider.measure("k", TARGET, [metric(builtin="errorRate")], START, END))
    error = got["m"].error
    assert error is not None and error.startswith("cannot connect to 127.0.0.1:9") and SECRET not in error


def test_a_slow_answer_is_an_error_naming_the_timeout() -> None:
    server = FakePrometheus(by_version, delay=1.0)

    async def run() -> dict[str, Values]:
        async with serving(server) as address:
            provider = Prometheus(PrometheusProvider(address=address, timeout="200ms"), "team-a", read_secret, ALLOW)
            return await provider.measure("k", TARGET, [metric(builtin="errorRate")], START, END)

    error = asyncio.run(run())["m"].error
    assert error is not None and error.startswith("no answer within 0.2s from http://127.0.0.1:")


def test_the_protocol_needs_no_sampling_and_remembers_nothing() -> None:
    provider = Prometheus(PrometheusProvider(address="http://127.0.0.1:9"), "team-a", read_secret, ALLOW)
    assert asyncio.run(provider.sample("k", TARGET, [metric(builtin="errorRate")], START, END)) is None
    provider.forget("k")


def test_the_ca_from_the_secret_is_the_one_trusted(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    def certificate(name: str, key: Any, issuer: Any, issuer_key: Any, ca: bool) -> Any:
        subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)])
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
            .not_valid_after(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )  # fmt: skip
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            )
        return builder.sign(issuer_key or key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("test CA", ca_key, None, None, True)
    leaf = certificate("127.0.0.1", server_key, ca.subject, ca_key, False)
    pem = serialization.Encoding.PEM
    (tmp_path / "cert.pem").write_bytes(leaf.public_bytes(pem))
    (tmp_path / "key.pem").write_bytes(server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                                 serialization.NoEncryption()))  # fmt: skip
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    SECRETS[("prom", "ca")] = ca.public_bytes(pem).decode()
    server = FakePrometheus(by_version)

    async def run(ca_ref: dict[str, str] | None) -> Values:
        async with serving(server, tls) as address:
            spec = PrometheusProvider.model_validate({"address": address, "caSecretRef": ca_ref})
            provider = Prometheus(spec, "team-a", read_secret, ALLOW)
            return (await provider.measure("k", TARGET, [metric(builtin="errorRate")], START, END))["m"]

    try:
        assert asyncio.run(run({"name": "prom", "key": "ca"})) == Values(canary=0.03, stable=0.01)
        untrusted = asyncio.run(run(None)).error
        assert untrusted is not None and "is not trusted" in untrusted
        not_pem = asyncio.run(run({"name": "prom", "key": "user"})).error
        assert not_pem == "caSecretRef: key user of Secret prom is not a PEM CA bundle"
    finally:
        del SECRETS[("prom", "ca")]


def test_a_query_is_sent_in_the_body_not_the_url() -> None:
    long = "x" + " + x" * 2000  # a proxy's URL length limit would refuse it in a GET
    _, server = measure(lambda path, form: ok("scalar", [1, "1"]), [metric(query=long)])
    assert {form["query"] for _, form, _ in server.requests} == {long}
    assert set(server.urls) == {"POST /api/v1/query"}
