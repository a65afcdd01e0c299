"""The ``prometheus`` provider: the analysis metrics from a Prometheus-compatible HTTP API that scrapes the model
servers.

Prometheus keeps the history, so nothing is sampled while a window is open and nothing is remembered: once the window
[start, end] has closed, every metric is queried for each version (the candidate, and the stable version if any):

- its value over the window: an instant query at ``end`` whose ranges span the window (``[<seconds>s]``);
- with ``compare``, its samples: a range query every ``step`` from ``start + step`` to ``end``, each point over the
  step before it (a range of the step rounded up to whole seconds), so that the samples tile the window. ``rate()``
  and ``increase()`` need two scrapes within a range: the step must be at least twice Prometheus' scrape interval,
  else a sample has no data.

The builtins are PromQL over the model server's own series (``server.metrics``), selected by the labels ``model`` and
``version`` the server exposes and the target label ``namespace`` that Prometheus' pod discovery adds (as the test
cluster's does, tests/cluster/monitoring.sh). predictionShift asks each version's prediction counts per sketch bin and
computes the Jensen-Shannon distance here (``logic.measure.prediction_shift``). A ``query`` is the user's PromQL with
``{{ model }}``, ``{{ version }}``, ``{{ namespace }}`` and ``{{ interval }}`` substituted (spaces inside the braces
optional); ``{{ interval }}`` is the window for the value and the step's range for the samples.

An answer must be one number: a scalar, or a vector of one series; an empty vector or NaN is no data. Every failure is
that metric's ``Values.error``, in words that carry no secret: addresses are redacted, the Secrets' values (token,
password, header values) are masked wherever an answer echoes them, and a response body is quoted only as the
``error`` field of Prometheus' own JSON.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import re
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from mlops_operator.api.canaryrollout import AnalysisMetric
from mlops_operator.api.common import PrometheusProvider, SecretKeyRef, duration_seconds
from mlops_operator.cli import PROMETHEUS_SETTING
from mlops_operator.logic import measure
from mlops_operator.logic.analysis import Values
from mlops_operator.outbound import UNRESTRICTED, Policy, redact
from mlops_operator.providers import Target
from mlops_operator.storage import describe, refusal

SecretReader = Callable[[str, SecretKeyRef], Awaitable[str]]


def secret_reader(api: Any) -> SecretReader:
    """Reads one key of a Secret with ``get`` (never list or watch) through ``api`` (the operator's API client)."""

    async def read(namespace: str, ref: SecretKeyRef) -> str:
        secret = await api.get("v1", "Secret", namespace, ref.name)
        if secret is None:
            raise LookupError(f"Secret {ref.name} not found")
        data = secret.get("data") or {}
        if ref.key not in data:
            raise LookupError(f"Secret {ref.name} has no key {ref.key}")
        return base64.b64decode(data[ref.key]).decode()

    return read


def operator_address() -> str | None:
    """The operator's own Prometheus (``--prometheus-url``), for resources that name none; None when unset."""
    return os.environ.get(PROMETHEUS_SETTING) or None


def connect(spec: PrometheusProvider | None, namespace: str, secret: SecretReader, policy: Policy,
            sessions: Sessions) -> Prometheus | None:  # fmt: skip
    """The Prometheus a resource names (``spec``, opened under the outbound ``policy``), else the operator's own
    (not a user's address: no policy applies), else None."""
    if spec is not None:
        return Prometheus(spec, namespace, secret, policy, sessions.of(policy))
    default = operator_address()
    if default is None:
        return None
    return Prometheus(PrometheusProvider(address=default), namespace, secret, UNRESTRICTED, sessions.of(UNRESTRICTED))


class Sessions:
    """One HTTP session per outbound policy, kept, so that connections to a Prometheus are reused across
    measurements: the operator's own default (unrestricted) apart from the addresses users write (the policy)."""

    def __init__(self) -> None:
        self._sessions: dict[bool, aiohttp.ClientSession] = {}

    def of(self, policy: Policy) -> aiohttp.ClientSession:
        key = policy is UNRESTRICTED
        session = self._sessions.get(key)
        if session is None or session.closed:
            session = self._sessions[key] = policy.session()
        return session

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


"""Reads a key of a Secret: (namespace, reference) -> value."""

REQUESTS = f"{measure.REQUESTS}_total"
BUCKETS = f"{measure.LATENCY}_bucket"
BINS = f"{measure.BINS}_total"
PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
PLACEHOLDERS = ("model", "version", "namespace", "interval")
QUERY, QUERY_RANGE = "/api/v1/query", "/api/v1/query_range"
# A query that selects far more than one series must not fill the operator's memory before it is refused.
MAX_ANSWER_BYTES = 8 << 20
MAX_ERROR_CHARS = 512
MASK = "<redacted>"

T = TypeVar("T")


class QueryError(Exception):
    """A metric could not be measured; the message is meant for status (it names nothing secret)."""


# --- PromQL -----------------------------------------------------------------------------------------------------------


def label_value(text: str) -> str:
    """``text`` as a PromQL string literal."""
    # JSON's escapes (\" \\ \n \uXXXX) are a subset of PromQL's.
    return json.dumps(text, ensure_ascii=False)


def matchers(target: Target, version: str) -> str:
    """The label matchers of one version's series (without braces)."""
    labels = {"namespace": target.namespace, "model": target.model, "version": version}
    return ",".join(f"{name}={label_value(value)}" for name, value in labels.items())


def range_of(seconds: float) -> str:
    """A PromQL range of at least ``seconds``: whole seconds, rounded up (a millisecond of clock jitter aside), at
    least 1s."""
    return f"{max(1, math.ceil(seconds - 0.001))}s"


def builtin_promql(name: str, target: Target, version: str, window: str) -> str:
    """The PromQL of a builtin metric of one version over ranges of ``window`` (a PromQL duration such as ``60s``).
    For predictionShift: that version's prediction counts per bin (``sum by (bin)``), not the distance.

    ValueError for an unknown builtin, or predictionShift without ``target.prediction``."""
    selected = matchers(target, version)
    if name in ("errorRate", "clientErrorRate"):
        codes = "5.." if name == "errorRate" else "4.."
        # A version that never answered with that class has no such series: its share is 0, and only the total
        # decides whether there is data.
        return (
            f'(sum(increase({REQUESTS}{{{selected},code=~"{codes}"}}[{window}])) or vector(0))'
            f" / sum(increase({REQUESTS}{{{selected}}}[{window}]))"
        )
    if name == "requestRate":
        # No request at all is a rate of 0, as the direct provider counts it.
        return f"sum(rate({REQUESTS}{{{selected}}}[{window}])) or vector(0)"
    if name in measure.QUANTILES:
        return f"histogram_quantile({measure.QUANTILES[name]}, sum by (le) (rate({BUCKETS}{{{selected}}}[{window}])))"
    if name == "predictionShift":
        if not target.prediction:
            raise ValueError("predictionShift needs the prediction's name (the reference profile's prediction column)")
        feature = label_value(target.prediction)
        return f"sum by (bin) (increase({BINS}{{{selected},feature={feature}}}[{window}]))"
    raise ValueError(f"unknown builtin metric {name!r}")


def user_promql(query: str, target: Target, version: str, interval: str) -> str:
    """A user's query with its placeholders substituted. ValueError naming the first unknown placeholder."""
    values = {"model": target.model, "version": version, "namespace": target.namespace, "interval": interval}
    for name in PLACEHOLDER.findall(query):
        if name not in values:
            known = ", ".join(f"{{{{ {p} }}}}" for p in PLACEHOLDERS)
            raise ValueError(f"unknown placeholder {{{{ {name} }}}} in the query (known: {known})")
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], query)


def promql(metric: AnalysisMetric, target: Target, version: str, window: str) -> str:
    """The PromQL that measures ``metric`` of one version over ranges of ``window``; ValueError as ``builtin_promql``
    and ``user_promql`` raise it."""
    if metric.query is not None:
        return user_promql(metric.query, target, version, window)
    assert metric.builtin is not None
    return builtin_promql(metric.builtin, target, version, window)


# --- answers ----------------------------------------------------------------------------------------------------------


def _number(text: Any) -> float | None:
    value = float(text)
    if math.isnan(value):
        return None
    if math.isinf(value):
        raise QueryError(f"the query returned {text}, not a finite number")
    return value


def value_of(data: Mapping[str, Any]) -> float | None:
    """The one number of an instant query's answer (its ``data``); None for no data. QueryError when it is not one
    number."""
    kind, result = data["resultType"], data["result"]
    if kind == "scalar":
        return _number(result[1])
    if kind == "vector":
        if len(result) > 1:
            raise QueryError(f"the query returned {len(result)} series; it must return one number (aggregate them, "
                             "for example with sum or max)")  # fmt: skip
        return _number(result[0]["value"][1]) if result else None
    raise QueryError(f"the query returned a {kind}; it must return one number (a scalar or a vector of one series)")


def samples_of(data: Mapping[str, Any]) -> list[float]:
    """The numbers of a range query's answer, oldest first, NaN left out; QueryError for more than one series."""
    kind, result = data["resultType"], data["result"]
    if kind != "matrix":
        raise QueryError(f"the range query returned a {kind}, not a matrix")
    if len(result) > 1:
        raise QueryError(f"the query returned {len(result)} series; it must return one number (aggregate them, "
                         "for example with sum or max)")  # fmt: skip
    numbers = (_number(value) for _, value in result[0]["values"]) if result else ()
    return [n for n in numbers if n is not None]


def bins_of(data: Mapping[str, Any], feature: str) -> measure.Reading:
    """A prediction-count query's answer (a vector by ``bin``) as a Reading of ``feature``'s bins."""
    if data["resultType"] != "vector":
        raise QueryError(f"the bin counts came as a {data['resultType']}, not a vector")
    bins: dict[tuple[str, str], float] = {}
    for series in data["result"]:
        count = _number(series["value"][1])
        if count is not None:
            bins[(feature, str(series["metric"].get("bin", "")))] = count
    return measure.Reading(bins=bins)


# --- HTTP -------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Credentials:
    headers: dict[str, str]
    ssl: ssl.SSLContext | bool
    secrets: tuple[str, ...]
    """The token, password and header values read from Secrets, and the headers made of them: masked in every
    message."""

    def mask(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text


def _failure(exc: BaseException, url: str, timeout: float) -> str:
    """What went wrong querying ``url``, in words that carry nothing secret."""
    refused = refusal(exc)
    if refused is not None:
        return f"refused by the operator's outbound policy: {refused}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        error = exc.certificate_error
        why = getattr(error, "verify_message", None) or getattr(error, "reason", None) or type(error).__name__
        return f"the certificate of {redact(url)} is not trusted ({why})"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s from {redact(url)} (spec timeout)"
    return describe(exc, url)


async def _all(*calls: Coroutine[Any, Any, T]) -> list[T]:
    """The calls' results; the first failure raised once every call has ended (none left running on a closed
    session)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


class _Connection:
    """Queries of one measurement: one session, the credentials read for it."""

    def __init__(self, session: aiohttp.ClientSession, address: str, credentials: _Credentials, timeout: float) -> None:
        self.session, self.address, self.credentials, self.timeout = session, address, credentials, timeout

    def url(self, endpoint: str) -> str:
        parts = urlsplit(self.address)
        return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + endpoint, parts.query, ""))

    async def call(self, endpoint: str, form: dict[str, str]) -> Mapping[str, Any]:
        """The ``data`` of a successful answer; QueryError otherwise."""
        url = self.url(endpoint)
        where = redact(url)
        try:
            # POST: a long query does not meet a proxy's URL length limit.
            async with self.session.post(url, data=form, headers=self.credentials.headers, ssl=self.credentials.ssl,
                                         timeout=aiohttp.ClientTimeout(total=self.timeout)) as response:  # fmt: skip
                status = response.status
                body = bytearray()
                async for chunk in response.content.iter_chunked(1 << 16):
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise QueryError(f"the answer from {where} is larger than {MAX_ANSWER_BYTES >> 20} MiB")
        except QueryError:
            raise
        except Exception as exc:  # every way a request fails is this metric's error, described safely
            raise QueryError(_failure(exc, url, self.timeout)) from None
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise QueryError(f"HTTP {status} from {where}: not a Prometheus API answer")
        if status != 200 or answer.get("status") != "success":
            kind = f" ({answer['errorType']})" if isinstance(answer.get("errorType"), str) else ""
            error = str(answer.get("error") or "no error given")[:MAX_ERROR_CHARS]
            raise QueryError(f"HTTP {status}{kind} from {where}: {error}")
        data = answer.get("data")
        if not isinstance(data, dict):
            raise QueryError(f"HTTP {status} from {where}: an answer without data")
        return data

    async def value(self, query: str, at: datetime) -> float | None:
        data = await self.call(QUERY, {"query": query, "time": _timestamp(at)})
        return _parsed(value_of, data)

    async def samples(self, query: str, first: datetime, last: datetime, step: float) -> list[float]:
        form = {"query": query, "start": _timestamp(first), "end": _timestamp(last), "step": f"{step:g}"}
        return _parsed(samples_of, await self.call(QUERY_RANGE, form))

    async def bins(self, query: str, at: datetime, feature: str) -> measure.Reading:
        data = await self.call(QUERY, {"query": query, "time": _timestamp(at)})
        return _parsed(lambda d: bins_of(d, feature), data)


def _timestamp(at: datetime) -> str:
    return f"{at.timestamp():.3f}"


def _parsed(parse: Callable[[Mapping[str, Any]], T], data: Mapping[str, Any]) -> T:
    try:
        return parse(data)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise QueryError(f"an answer not shaped as Prometheus' ({type(exc).__name__})") from None


# --- the provider -----------------------------------------------------------------------------------------------------


class Prometheus:
    """Measures through the Prometheus API at ``spec.address``, reading the credentials of ``spec`` from the Secrets
    of ``namespace`` with ``secret`` at every measurement (a rotated Secret is used at the next window), and
    connecting only where ``policy`` allows."""

    name = "prometheus"

    def __init__(
        self, spec: PrometheusProvider, namespace: str, secret: SecretReader, policy: Policy,
        session: aiohttp.ClientSession | None = None,
    ) -> None:  # fmt: skip
        """``session``: a long-lived session made by ``policy.session()`` (the controller's, so that connections are
        reused across measurements); without one, a session per measurement."""
        self.spec, self.namespace, self.secret, self.policy = spec, namespace, secret, policy
        self.session = session

    async def sample(
        self, key: str, target: Target, metrics: Sequence[AnalysisMetric], start: datetime, now: datetime
    ) -> float | None:
        return None  # Prometheus keeps the history

    def forget(self, key: str) -> None:
        pass  # nothing is remembered

    async def measure(
        self, key: str, target: Target, metrics: Sequence[AnalysisMetric], start: datetime, end: datetime
    ) -> dict[str, Values]:
        if end <= start:
            return {m.name: Values(error="the window is empty (it does not end after it starts)") for m in metrics}
        timeout = duration_seconds(self.spec.timeout)
        try:
            self._check_address()
            credentials = await self._credentials()
        except QueryError as exc:
            return {m.name: Values(error=str(exc)) for m in metrics}
        if self.session is not None and not self.session.closed:
            connection = _Connection(self.session, self.spec.address, credentials, timeout)
            measured = await asyncio.gather(*(self._metric(connection, target, m, start, end) for m in metrics))
        else:
            # A session of this measurement's own: nothing to close when the caller drops the provider.
            async with self.policy.session(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
                connection = _Connection(session, self.spec.address, credentials, timeout)
                measured = await asyncio.gather(*(self._metric(connection, target, m, start, end) for m in metrics))
        return {m.name: values for m, values in zip(metrics, measured, strict=True)}

    async def _metric(
        self, connection: _Connection, target: Target, metric: AnalysisMetric, start: datetime, end: datetime
    ) -> Values:
        window = range_of((end - start).total_seconds())
        versions = [target.canary, *([target.stable] if target.stable else [])]
        try:
            if metric.builtin == "predictionShift":
                return await self._prediction_shift(connection, target, window, end)
            queries = [promql(metric, target, v, window) for v in versions]
            values = await _all(*(connection.value(query, end) for query in queries))
            samples: list[list[float]] = [[] for _ in versions]
            if metric.compare is not None:
                step = duration_seconds(metric.compare.step)
                first = start + timedelta(seconds=step)
                if first <= end:  # else the window holds no whole step: no samples
                    queries = [promql(metric, target, v, range_of(step)) for v in versions]
                    samples = await _all(*(connection.samples(query, first, end, step) for query in queries))
        except (QueryError, ValueError) as exc:
            return Values(error=connection.credentials.mask(str(exc)))
        return Values(
            canary=values[0], stable=values[1] if target.stable else None,
            canary_samples=tuple(samples[0]), stable_samples=tuple(samples[1]) if target.stable else (),
        )  # fmt: skip

    async def _prediction_shift(self, connection: _Connection, target: Target, window: str, end: datetime) -> Values:
        if not target.prediction:
            return Values(error=f"{target.canary} has no reference profile with a prediction column "
                          "(spec.reference.prediction): predictionShift compares prediction distributions")  # fmt: skip
        if not target.stable:
            return Values(error="no stable version to compare with")
        feature = target.prediction
        queries = [builtin_promql("predictionShift", target, v, window) for v in (target.canary, target.stable)]
        canary, stable = await _all(*(connection.bins(query, end, feature) for query in queries))
        return Values(canary=measure.prediction_shift(canary, stable, feature))

    async def vector(self, query: str, at: datetime) -> list[tuple[dict[str, str], float]]:
        """An instant query's series (labels and value) at ``at``: QueryError with a safe message otherwise."""
        timeout = duration_seconds(self.spec.timeout)
        self._check_address()
        credentials = await self._credentials()

        async def run(connection: _Connection) -> list[tuple[dict[str, str], float]]:
            try:
                data = await connection.call(QUERY, {"query": query, "time": _timestamp(at)})
                if data["resultType"] != "vector":
                    raise QueryError(f"the query returned a {data['resultType']}, not a vector")
                out = []
                for series in data["result"]:
                    value = _number(series["value"][1])
                    if value is not None:
                        out.append(({str(k): str(v) for k, v in series["metric"].items()}, value))
                return out
            except QueryError as exc:
                raise QueryError(credentials.mask(str(exc))) from None
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise QueryError(f"an answer not shaped as Prometheus' ({type(exc).__name__})") from None

        if self.session is not None and not self.session.closed:
            return await run(_Connection(self.session, self.spec.address, credentials, timeout))
        async with self.policy.session(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            return await run(_Connection(session, self.spec.address, credentials, timeout))

    def _check_address(self) -> None:
        parts = urlsplit(self.spec.address)
        if parts.username is not None or parts.password is not None:
            # The spec is readable by whoever reads the rollout: credentials belong in a Secret.
            raise QueryError(f"{redact(self.spec.address)}: the address carries credentials; give them in basicAuth "
                             "(from a Secret) instead")  # fmt: skip

    async def _read(self, ref: SecretKeyRef, field: str) -> str:
        try:
            return await self.secret(self.namespace, ref)
        except Exception as exc:  # the metric's error says which Secret could not be read
            raise QueryError(f"{field}: cannot read key {ref.key} of Secret {ref.name} "
                             f"({exc or type(exc).__name__})") from None  # fmt: skip

    async def _credentials(self) -> _Credentials:
        """The headers and TLS context of every query, from the spec and its Secrets. Secret values are stripped of
        surrounding whitespace (a file's trailing newline), as Prometheus' own credential files are."""
        spec = self.spec
        headers: dict[str, str] = {}
        secrets: list[str] = []
        for header in spec.headers or []:
            if header.value_from is not None:
                value = (await self._read(header.value_from, f"headers[{header.name}].valueFrom")).strip()
                secrets.append(value)
            else:
                value = header.value or ""
            if any(c in value for c in "\r\n\0"):
                raise QueryError(f"headers[{header.name}]: the value holds a line break or NUL")
            headers[header.name] = value
        if spec.bearer_token_secret_ref is not None and spec.basic_auth is not None:
            raise QueryError("bearerTokenSecretRef and basicAuth are both set: give one")
        authorization: str | None = None
        if spec.bearer_token_secret_ref is not None:
            token = (await self._read(spec.bearer_token_secret_ref, "bearerTokenSecretRef")).strip()
            secrets.append(token)
            authorization = f"Bearer {token}"
        if spec.basic_auth is not None:
            user = (await self._read(spec.basic_auth.username_secret_ref, "basicAuth.usernameSecretRef")).strip()
            password = (await self._read(spec.basic_auth.password_secret_ref, "basicAuth.passwordSecretRef")).strip()
            secrets.append(password)  # the user name is not a secret, and a short one would mask common words
            if ":" in user:
                raise QueryError("basicAuth.usernameSecretRef: a user name must not contain ':'")
            authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if authorization is not None:
            if any(name.lower() == "authorization" for name in headers):
                raise QueryError("headers sets Authorization and so does bearerTokenSecretRef or basicAuth: give one")
            headers["Authorization"] = authorization
            secrets.append(authorization)
        context: ssl.SSLContext | bool = True
        if spec.ca_secret_ref is not None:
            ref = spec.ca_secret_ref
            pem = await self._read(ref, "caSecretRef")
            try:
                # Only this bundle is trusted: the server's certificate must chain to it.
                context = ssl.create_default_context(cadata=pem)
            except (ssl.SSLError, ValueError):
                raise QueryError(f"caSecretRef: key {ref.key} of Secret {ref.name} is not a PEM CA bundle") from None
        return _Credentials(headers, context, tuple(s for s in secrets if s))
