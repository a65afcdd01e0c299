"""Alert receivers: the payload each one builds, and what ``deliver`` makes of real HTTP servers on loopback (answers,
errors, timeouts, redirects, the allowlist of receiver hosts), with errors that never name a URL, key or token."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from mlops_operator.api.alertrule import Receiver
from mlops_operator.outbound import UNRESTRICTED, HostRule, Policy
from mlops_operator.receivers import (
    AlertPayload,
    Notification,
    Result,
    alertmanager_payload,
    deliver,
    pagerduty_events,
    scrub,
    slack_payload,
    webhook_payload,
)
from mlops_operator.receivers.alertmanager import alerts_url
from mlops_operator.receivers.http import allowed

# Every secret holds "s3cr3t": an error must not, in any letter case.
SECRET_PATH = "/services/T0001/B0002/s3cr3t-TOKEN-abc"
TOKEN = "bearer-s3cr3t-token-9f2b"
ROUTING_KEY = "R0UTING-s3cr3t-KEY-4d1e0123456789"
START = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
RESOLVED_AT = START + timedelta(minutes=7)
KINDS = ("webhook", "alertmanager", "slack", "pagerduty")


def alert(fingerprint: str = "0123456789abcdef", status: str = "firing", **labels: str) -> AlertPayload:
    return AlertPayload(
        fingerprint=fingerprint,
        labels={"alertname": "FraudErrors", "severity": "critical", "namespace": "team-a", **labels},
        annotations={"summary": f"errors high on {labels.get('pod', 'fraud')}", "description": "5xx above 5%"},
        status=status,  # type: ignore[arg-type]
        starts_at=START,
        ends_at=RESOLVED_AT if status == "resolved" else None,
        value="0.07",
        generator_url="https://console.example/alerts/team-a/fraud-errors",
    )


FIRING = alert("0123456789abcdef", pod="p0")
RESOLVED = alert("fedcba9876543210", "resolved", pod="p1")


def notification(*alerts: AlertPayload) -> Notification:
    return Notification(namespace="team-a", rule="fraud-errors", receiver="ops", group_key="team-a/fraud-errors/ops",
                        alerts=alerts, external_url="mlops-operator")  # fmt: skip


NOTE = notification(FIRING, RESOLVED)


def receiver(kind: str, **spec: Any) -> Receiver:
    refs = {"webhook": {"urlSecretRef": {"name": "hooks", "key": "url"}},
            "alertmanager": {"urlSecretRef": {"name": "am", "key": "url"}},
            "slack": {"webhookUrlSecretRef": {"name": "slack", "key": "url"}},
            "pagerduty": {"routingKeySecretRef": {"name": "pd", "key": "key"}},
            "event": {}}  # fmt: skip
    return Receiver.model_validate({"name": "ops", kind: {**refs[kind], **spec}})


def credentials(kind: str, url: str) -> dict[str, str]:
    extra = {"alertmanager": {"token": TOKEN}, "pagerduty": {"routing_key": ROUTING_KEY}}.get(kind, {})
    return {"url": url, **extra}


# --- payloads ---------------------------------------------------------------------------------------------------------


def test_the_webhook_payload_is_alertmanagers_version_4() -> None:
    assert webhook_payload(NOTE) == {
        "version": "4",
        "groupKey": "team-a/fraud-errors/ops",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "ops",
        "groupLabels": {"alertname": "FraudErrors", "namespace": "team-a"},
        "commonLabels": {"alertname": "FraudErrors", "severity": "critical", "namespace": "team-a"},
        "commonAnnotations": {"description": "5xx above 5%"},
        "externalURL": "mlops-operator",
        "alerts": [
            {"status": "firing", "labels": FIRING.labels, "annotations": FIRING.annotations,
             "startsAt": "2025-01-01T12:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
             "generatorURL": "https://console.example/alerts/team-a/fraud-errors", "fingerprint": "0123456789abcdef"},
            {"status": "resolved", "labels": RESOLVED.labels, "annotations": RESOLVED.annotations,
             "startsAt": "2025-01-01T12:00:00Z", "endsAt": "2025-01-01T12:07:00Z",
             "generatorURL": "https://console.example/alerts/team-a/fraud-errors", "fingerprint": "fedcba9876543210"},
        ],
    }  # fmt: skip


def test_a_webhook_group_with_nothing_firing_is_resolved_and_group_labels_fall_back_to_the_rule() -> None:
    bare = replace(RESOLVED, labels={"severity": "info"}, generator_url=None)
    payload = webhook_payload(notification(bare))
    assert payload["status"] == "resolved"
    assert payload["groupLabels"] == {"alertname": "fraud-errors", "namespace": "team-a"}
    assert payload["alerts"][0]["generatorURL"] == ""


def test_alertmanager_alerts_carry_their_end_only_when_known() -> None:
    valid_until = START + timedelta(minutes=4)
    naive = replace(FIRING, ends_at=valid_until.replace(tzinfo=None), generator_url=None)
    assert alertmanager_payload(notification(naive, replace(FIRING, ends_at=None), RESOLVED)) == [
        {"labels": FIRING.labels, "annotations": FIRING.annotations, "startsAt": "2025-01-01T12:00:00Z",
         "endsAt": "2025-01-01T12:04:00Z"},
        {"labels": FIRING.labels, "annotations": FIRING.annotations, "startsAt": "2025-01-01T12:00:00Z",
         "generatorURL": FIRING.generator_url},
        {"labels": RESOLVED.labels, "annotations": RESOLVED.annotations, "startsAt": "2025-01-01T12:00:00Z",
         "endsAt": "2025-01-01T12:07:00Z", "generatorURL": RESOLVED.generator_url},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("base", "expected"),
    [("http://am:9093", "http://am:9093/api/v2/alerts"), ("http://am:9093/", "http://am:9093/api/v2/alerts"),
     ("https://proxy/am/", "https://proxy/am/api/v2/alerts")],
)  # fmt: skip
def test_the_alertmanager_endpoint_is_under_its_base_url(base: str, expected: str) -> None:
    assert alerts_url(base) == expected


def test_a_slack_message_titles_the_group_and_lists_its_alerts_firing_first() -> None:
    message = slack_payload(notification(RESOLVED, FIRING), channel="#oncall")
    assert message["text"] == "[FIRING:1] FraudErrors (critical)"
    assert message["channel"] == "#oncall" and message["username"] == "mlops-operator"
    (attachment,) = message["attachments"]
    assert attachment["color"] == "danger"
    assert attachment["title"] == "[FIRING:1] FraudErrors (critical)"
    assert attachment["footer"] == "AlertRule team-a/fraud-errors"
    firing, resolved = attachment["text"].split("\n\n")
    assert firing.splitlines() == ["*FIRING* errors high on p0", "5xx above 5%", "value: 0.07",
                                   "labels: `namespace=team-a`, `pod=p0`"]  # fmt: skip
    assert resolved.startswith("*RESOLVED* errors high on p1")


@pytest.mark.parametrize(
    ("alerts", "color", "title"),
    [((RESOLVED,), "good", "[RESOLVED] FraudErrors (critical)"),
     ((alert(severity="warning"), alert("1" * 16, severity="info")), "warning", "[FIRING:2] FraudErrors (warning)")],
)  # fmt: skip
def test_the_slack_colour_follows_state_and_severity(alerts: tuple[AlertPayload, ...], color: str, title: str) -> None:
    message = slack_payload(notification(*alerts))
    assert (message["attachments"][0]["color"], message["text"]) == (color, title)
    assert "channel" not in message


def test_slack_text_is_escaped_and_a_long_group_is_counted() -> None:
    odd = replace(FIRING, annotations={"summary": "p99 > 1s & <rising>", "runbook_url": "https://rb.example/x?a=1&b"})
    text = slack_payload(notification(odd))["attachments"][0]["text"]
    assert "p99 &gt; 1s &amp; &lt;rising&gt;" in text and "<https://rb.example/x?a=1&amp;b|runbook>" in text
    many = notification(*(alert(f"{i:016x}", pod=f"p{i}") for i in range(25)))
    assert slack_payload(many)["attachments"][0]["text"].endswith("… and 5 more")


def test_a_pagerduty_trigger_describes_the_alert() -> None:
    runbook = replace(FIRING, annotations={**FIRING.annotations, "runbook_url": "https://rb.example/fraud"},
                      labels={**FIRING.labels, "name": "fraud"})  # fmt: skip
    (event,) = pagerduty_events(notification(runbook), ROUTING_KEY)
    assert event == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "team-a/fraud-errors/0123456789abcdef",
        "payload": {
            "summary": "errors high on p0",
            "source": "team-a/fraud",
            "severity": "critical",
            "timestamp": "2025-01-01T12:00:00Z",
            "component": "fraud",
            "group": "fraud-errors",
            "class": "FraudErrors",
            "custom_details": {"labels": runbook.labels, "annotations": runbook.annotations, "value": "0.07"},
        },
        "links": [{"href": "https://rb.example/fraud", "text": "runbook"}],
        "client": "mlops-operator",
    }


def test_a_pagerduty_resolve_carries_only_the_key_and_the_same_dedup_key_as_its_trigger() -> None:
    (trigger,) = pagerduty_events(notification(FIRING), ROUTING_KEY)
    # Another notification of the same instance, resolved: another group, order and receiver name.
    later = replace(notification(RESOLVED, replace(FIRING, status="resolved", ends_at=RESOLVED_AT)), receiver="pd")
    _, resolve = pagerduty_events(later, ROUTING_KEY)
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": trigger["dedup_key"]}
    assert trigger["dedup_key"] == "team-a/fraud-errors/0123456789abcdef"


@pytest.mark.parametrize(("severity", "expected"), [("critical", "critical"), ("warning", "warning"),
                                                    ("info", "info"), ("page", "error")])  # fmt: skip
def test_pagerduty_severities(severity: str, expected: str) -> None:
    (event,) = pagerduty_events(notification(alert(severity=severity)), ROUTING_KEY)
    assert event["payload"]["severity"] == expected and "links" not in event


def test_a_pagerduty_summary_falls_back_to_the_labels_and_is_cut_to_1024() -> None:
    bare = replace(FIRING, annotations={}, labels={"alertname": "FraudErrors", "severity": "info", "pod": "p0"})
    (event,) = pagerduty_events(notification(bare), ROUTING_KEY)
    assert event["payload"]["summary"] == "FraudErrors: pod=p0, severity=info"
    assert event["payload"]["source"] == "team-a/fraud-errors"
    long = replace(FIRING, annotations={"summary": "x" * 2000})
    (event,) = pagerduty_events(notification(long), ROUTING_KEY)
    assert len(event["payload"]["summary"]) == 1024


# --- servers on loopback ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Capture:
    """An HTTP server that records every request and answers ``status`` with ``body`` (``echo``: the request's URL,
    Authorization header and body, as a careless server's error would), after ``delay`` seconds."""

    status: int = 200
    body: str = "ok"
    echo: bool = False
    delay: float = 0.0
    location: str | None = None
    answer: Callable[[Seen], int] | None = None
    """The status by request, instead of ``status``."""
    seen: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        seen = Seen(request.path_qs, dict(request.headers), await request.json() if request.can_read_body else None)
        self.seen.append(seen)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(self.delay)
        self.in_flight -= 1
        text = f"no: {request.url} {request.headers.get('Authorization')} {seen.body}" if self.echo else self.body
        headers = {"Location": self.location} if self.location else None
        status = self.answer(seen) if self.answer is not None else self.status
        return web.Response(status=status, text=text, headers=headers)


@asynccontextmanager
async def serving(capture: Capture) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", capture.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def send(
    kind: str,
    capture: Capture,
    note: Notification = NOTE,
    hosts: list[HostRule] | None = None,
    timeout: float = 5.0,
    policy: Policy = UNRESTRICTED,
    url: Callable[[str], str] = lambda base: base + SECRET_PATH,
    creds: dict[str, str] | None = None,
) -> tuple[Result, str]:
    """The Result of delivering ``note`` to a ``kind`` receiver at ``url(capture's address)``, and that URL."""

    async def run() -> tuple[Result, str]:
        async with serving(capture) as base, policy.session() as session:
            target = url(base)
            given = credentials(kind, target) if creds is None else creds
            return await deliver(receiver(kind), given, note, session, hosts, timeout), target

    return asyncio.run(run())


def test_a_webhook_is_posted_as_json_to_its_url() -> None:
    capture = Capture()
    result, _ = send("webhook", capture)
    assert result == Result(ok=True, status=200)
    (seen,) = capture.seen
    assert seen.path == SECRET_PATH and seen.headers["Content-Type"] == "application/json"
    assert seen.body == webhook_payload(NOTE)


def test_alertmanager_gets_its_alerts_under_the_base_url_with_the_bearer_token() -> None:
    capture = Capture()
    result, _ = send("alertmanager", capture, url=lambda base: base + "/am/")
    assert result.ok
    (seen,) = capture.seen
    assert seen.path == "/am/api/v2/alerts" and seen.headers["Authorization"] == f"Bearer {TOKEN}"
    assert seen.body == alertmanager_payload(NOTE)


def test_a_secrets_trailing_newline_is_not_sent() -> None:
    capture = Capture()

    async def run() -> Result:
        async with serving(capture) as base, UNRESTRICTED.session() as session:
            given = {"url": base + "/\n", "token": TOKEN + "\n"}
            return await deliver(receiver("alertmanager"), given, NOTE, session, None, 5.0)

    assert asyncio.run(run()).ok
    assert capture.seen[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_slack_takes_ok_and_the_receivers_channel() -> None:
    capture = Capture(body="ok")

    async def run() -> Result:
        async with serving(capture) as base, UNRESTRICTED.session() as session:
            return await deliver(receiver("slack", channel="#oncall"), {"url": base + SECRET_PATH}, NOTE, session,
                                 None, 5.0)  # fmt: skip

    assert asyncio.run(run()).ok
    assert capture.seen[0].body == slack_payload(NOTE, "#oncall")


def test_slacks_error_is_quoted_and_not_retried() -> None:
    result, _ = send("slack", Capture(status=403, body="invalid_token"))
    assert result == Result(ok=False, error="HTTP 403: invalid_token", status=403, retryable=False)


def test_a_slack_answer_without_ok_is_a_failure() -> None:
    result, _ = send("slack", Capture(status=200, body="not slack"))
    assert result == Result(ok=False, error="HTTP 200 without Slack's ok: not slack", status=200, retryable=False)


def test_pagerduty_gets_one_event_per_alert_concurrently() -> None:
    capture = Capture(status=202, body='{"status":"success"}', delay=0.2)
    note = notification(*(alert(f"{i:016x}", pod=f"p{i}") for i in range(4)), RESOLVED)
    result, _ = send("pagerduty", capture, note)
    assert result == Result(ok=True, status=202)
    assert sorted(s.body["dedup_key"] for s in capture.seen) == sorted(e["dedup_key"] for e in
                                                                       pagerduty_events(note, ROUTING_KEY))  # fmt: skip
    assert {s.path for s in capture.seen} == {SECRET_PATH} and capture.most_in_flight > 1


def test_pagerduty_counts_the_failed_events_and_gives_the_first_reason() -> None:
    capture = Capture(answer=lambda seen: 500 if seen.body["event_action"] == "resolve" else 202, body="")
    result, _ = send("pagerduty", capture, notification(FIRING, RESOLVED, alert("2" * 16)))
    assert result == Result(ok=False, error="1 of 3 events failed: HTTP 500", status=500, retryable=True)


def test_pagerduty_uses_its_default_endpoint_without_a_url() -> None:
    # The default endpoint is not allowed here: refused before anything leaves the host.
    result, _ = send("pagerduty", Capture(), hosts=[HostRule.parse("127.0.0.1")], creds={"routing_key": ROUTING_KEY},
                     note=notification(FIRING))  # fmt: skip
    assert result == Result(ok=False, error="host not in the receiver allowlist (--receiver-host)", retryable=False)


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (400, False), (404, False), (401, False)]
)
@pytest.mark.parametrize("kind", KINDS)
def test_an_error_status_fails_and_only_429_and_5xx_are_retried(kind: str, status: int, retryable: bool) -> None:
    result, _ = send(kind, Capture(status=status, body="nope"), notification(FIRING))
    assert result == Result(ok=False, error=f"HTTP {status}: nope", status=status, retryable=retryable)


def test_a_slow_receiver_times_out_and_is_retried() -> None:
    result, _ = send("webhook", Capture(delay=2.0), timeout=0.3)
    assert result == Result(ok=False, error="timed out after 0.3s", retryable=True)


def test_the_timeout_covers_the_whole_delivery() -> None:
    # Each PagerDuty event alone is quicker than the timeout; the 20 of them, 8 at a time, are not.
    note = notification(*(alert(f"{i:016x}") for i in range(20)))
    result, _ = send("pagerduty", Capture(status=202, delay=0.2), note, timeout=0.5)
    assert result == Result(ok=False, error="timed out after 0.5s", retryable=True)


def test_a_closed_port_is_a_retryable_connection_error() -> None:
    port = closed_port()
    result, _ = send("webhook", Capture(), url=lambda base: f"http://127.0.0.1:{port}{SECRET_PATH}")
    assert result == Result(ok=False, error="connection refused", retryable=True)


def test_a_redirect_is_not_followed() -> None:
    target = Capture()

    async def run() -> Result:
        async with serving(target) as elsewhere:
            mover = Capture(status=302, location=elsewhere + "/stolen")
            async with serving(mover) as base, UNRESTRICTED.session() as session:
                return await deliver(receiver("webhook"), {"url": base + SECRET_PATH}, NOTE, session, None, 5.0)

    assert asyncio.run(run()) == Result(ok=False, error="redirect not followed (HTTP 302)", status=302,
                                        retryable=False)  # fmt: skip
    assert target.seen == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_host_outside_the_allowlist_is_refused_before_any_request(kind: str) -> None:
    capture = Capture()
    result, _ = send(kind, capture, hosts=[HostRule.parse("hooks.slack.com"), HostRule.parse("127.0.0.1:1")])
    assert (result.ok, result.retryable, result.status) == (False, False, None)
    # PagerDuty's error counts its events: "2 of 2 events failed: ...".
    assert result.error is not None and result.error.endswith("host not in the receiver allowlist (--receiver-host)")
    assert capture.seen == []


def test_an_allowed_host_is_delivered_to() -> None:
    result, _ = send("webhook", Capture(), hosts=[HostRule.parse("hooks.slack.com"), HostRule.parse("127.0.0.0/8")])
    assert result.ok


@pytest.mark.parametrize(
    ("rule", "host", "port", "expected"),
    [("hooks.slack.com", "Hooks.Slack.com.", 443, True), ("hooks.slack.com:8443", "hooks.slack.com", 443, False),
     ("evil.hooks.slack.com", "hooks.slack.com", 443, False), ("10.0.0.0/8", "10.1.2.3", 80, True),
     ("10.0.0.0/8", "am.monitoring", 80, False), ("[::1]:9093", "::1", 9093, True)],
)  # fmt: skip
def test_allowlist_rules(rule: str, host: str, port: int, expected: bool) -> None:
    assert allowed([HostRule.parse(rule)], host, port) is expected


def test_the_outbound_policy_refuses_and_its_refusal_does_not_name_the_host() -> None:
    capture = Capture()
    result, _ = send("webhook", capture, policy=Policy())
    assert result.ok is False and not result.retryable and capture.seen == []
    assert result.error == ("refused by the operator's outbound policy: the host is a loopback address "
                            "(refused unless --allow-loopback or --allow-host)")  # fmt: skip


def test_a_url_that_is_not_http_is_refused() -> None:
    result, _ = send("webhook", Capture(), url=lambda base: "ftp://127.0.0.1" + SECRET_PATH)
    assert result == Result(ok=False, error="the URL is not a valid http or https URL", retryable=False)


@pytest.mark.parametrize(("kind", "role"), [("webhook", "url"), ("slack", "url"), ("alertmanager", "url"),
                                            ("pagerduty", "routing_key")])  # fmt: skip
def test_missing_credentials_send_nothing(kind: str, role: str) -> None:
    capture = Capture()
    result, _ = send(kind, capture, creds={})
    assert result == Result(ok=False, error=f"no {role} in the receiver's credentials (its Secret key)",
                            retryable=False)  # fmt: skip
    assert capture.seen == []


def test_a_notification_without_alerts_sends_nothing() -> None:
    capture = Capture()
    result, _ = send("webhook", capture, notification())
    assert result == Result(ok=True) and capture.seen == []


def test_events_are_not_delivered_here() -> None:
    with pytest.raises(ValueError, match="event receiver"):
        asyncio.run(deliver(receiver("event"), {}, NOTE, None, None, 1.0))  # type: ignore[arg-type]


# --- redaction --------------------------------------------------------------------------------------------------------

FAILURES: dict[str, dict[str, Any]] = {
    "5xx echoing the request": {"capture": Capture(status=500, echo=True)},
    "4xx echoing the request": {"capture": Capture(status=400, echo=True)},
    "redirect to itself": {"capture": Capture(status=307, location="SELF")},
    "timeout": {"capture": Capture(delay=2.0), "timeout": 0.3},
    "closed port": {"url": "closed"},
    "allowlist": {"hosts": [HostRule.parse("hooks.slack.com")]},
    "outbound policy": {"policy": Policy()},
    "not http": {"url": "ftp"},
    "malformed": {"url": "http://[::1"},
}


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("kind", KINDS)
def test_no_error_names_the_url_its_host_the_routing_key_or_the_token(kind: str, failure: str) -> None:
    case = FAILURES[failure]
    capture = replace(case.get("capture", Capture()), seen=[])
    port = closed_port()

    def url(base: str) -> str:
        if capture.location == "SELF":
            capture.location = base + SECRET_PATH
        if case.get("url") == "closed":
            return f"http://127.0.0.1:{port}{SECRET_PATH}"
        prefix = {"ftp": "ftp://127.0.0.1", "http://[::1": "http://[::1"}.get(case.get("url", ""), base)
        return prefix + SECRET_PATH + "?sig=s3cr3t-SIG-77"

    result, _ = send(kind, capture, notification(FIRING), hosts=case.get("hosts"), timeout=case.get("timeout", 5.0),
                     policy=case.get("policy", UNRESTRICTED), url=url)  # fmt: skip
    assert not result.ok and result.error
    error = result.error.lower()
    assert "s3cr3t" not in error, result.error
    assert "127.0.0.1" not in error and "/services" not in error and "sig=" not in error, result.error
    if capture.echo:
        assert result.error.startswith(f"HTTP {capture.status}: no: ") and "<redacted>" in result.error


def test_a_slack_answer_without_ok_that_echoes_the_request_names_nothing_secret() -> None:
    result, _ = send("slack", Capture(status=200, echo=True), url=lambda base: base + SECRET_PATH + "?s=s3cr3t-Q")
    assert result.error is not None and result.error.startswith("HTTP 200 without Slack's ok: no: <redacted>")
    assert "s3cr3t" not in result.error.lower() and "127.0.0.1" not in result.error


def test_scrub_masks_the_credentials_and_the_urls_parts_in_any_case() -> None:
    creds = {"url": "https://Hooks.Example.com/hook/s3cr3t-TOKEN-abc?sig=s3cr3t-SIG", "token": TOKEN}
    text = ("POST https://hooks.example.com/hook/s3cr3t-token-abc failed for S3CR3T-TOKEN-ABC at hooks.example.com "
            f"with {TOKEN}, sig s3cr3t-SIG; hook ok")  # fmt: skip
    scrubbed = scrub(text, creds)
    assert "s3cr3t" not in scrubbed.lower() and "example.com" not in scrubbed.lower()
    assert scrubbed.endswith("sig <redacted>; hook ok")
