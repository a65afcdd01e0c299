"""AlertRule delivery end to end: a condition rule over a real ModelDeployment fires and resolves, the operator (a
real process, killed and started again) notifies receivers that are local HTTP servers recording what they are sent.

The alert source of every test: a ModelDeployment of a version that does not exist, which the operator marks
Ready=False within seconds; the rule holds for it while it carries the test's label, and resolves once it is deleted
or relabelled. Grouping with no wait and a short interval sends each change at the evaluation that sees it.
"""

from __future__ import annotations

import itertools
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support import (
    Body,
    Kubectl,
    OperatorProcess,
    condition,
    condition_is,
    events,
    free_port,
    start_operator,
    wait_status,
)

LABEL = {"alerting": "delivery"}
GROUPING = {"groupWait": "0s", "groupInterval": "1s", "repeatInterval": "1h"}

# --- capture servers -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request a capture server received."""

    path: str
    headers: dict[str, str]
    body: Any
    at: datetime
    """When it arrived (wall clock, UTC: compared with the times in the rule's status)."""


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: str = ""
    delay: float = 0.0
    """Seconds to wait before answering (longer than a receiver's timeout: the operator gives up first)."""
    content_type: str = "text/plain"


Answering = Callable[[int, Request], Answer]
"""What a capture server answers to its n-th request (from 1)."""


@dataclass
class Capture:
    """An HTTP server on 127.0.0.1 that records every POST and answers as ``answering`` says."""

    answering: Answering
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self) -> list[Request]:
        with self.lock:
            return list(self.requests)

    def start(self) -> None:
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                request = Request(self.path, dict(self.headers.items()), body, datetime.now(UTC))
                with capture.lock:
                    capture.requests.append(request)
                    n = len(capture.requests)
                answer = capture.answering(n, request)
                time.sleep(answer.delay)
                data = answer.body.encode()
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", answer.content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the operator gave up waiting (its timeout) and closed the connection

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def always(answer: Answer) -> Answering:
    return lambda n, request: answer


SLACK_OK = always(Answer(200, "ok"))
PAGERDUTY_OK = always(Answer(202, json.dumps({"status": "success", "message": "Event processed"}),
                             content_type="application/json"))  # fmt: skip
WEBHOOK_OK = always(Answer(200, ""))


@pytest.fixture
def capture() -> Iterator[Callable[[Answering], Capture]]:
    """Starts capture servers (stopped after the test)."""
    started: list[Capture] = []

    def start(answering: Answering) -> Capture:
        server = Capture(answering)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def restarted(kubectl: Kubectl, tmp_path: Path) -> Iterator[Callable[[OperatorProcess], OperatorProcess]]:
    """Kills an operator with SIGKILL (no cleanup, nothing flushed) and starts a new one at once; the new ones are
    stopped after the test."""
    started: list[OperatorProcess] = []

    def restart(op: OperatorProcess) -> OperatorProcess:
        op.stop(signal.SIGKILL)
        new = start_operator(tmp_path, "--namespace", kubectl.namespace or "default")
        started.append(new)
        return new

    yield restart
    for op in started:
        if op.proc.poll() is None:
            op.stop()


# --- givens --------------------------------------------------------------------------------------------------------


def given_broken_deployment(kubectl: Kubectl, name: str) -> None:
    """A ModelDeployment of a version that does not exist, carrying LABEL: waits until the operator says Ready=False."""
    kubectl.apply({"apiVersion": "mlops.io/v1alpha1", "kind": "ModelDeployment",
                   "metadata": {"name": name, "labels": LABEL},
                   "spec": {"model": "nothing", "version": "9.9.9"}})  # fmt: skip
    wait_status(kubectl, "modeldeployment", name, "Ready=False", condition_is("Ready", "False"), timeout=30)


def secret(kubectl: Kubectl, name: str, **values: str) -> None:
    """The Secret ``name`` holding ``values``."""
    kubectl.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": values})


def ref(name: str, key: str) -> dict[str, str]:
    """A reference to the key ``key`` of the Secret ``name``."""
    return {"name": name, "key": key}


def given_rule(kubectl: Kubectl, name: str, receivers: list[Body], **spec: Any) -> None:
    """An AlertRule holding for every ModelDeployment with LABEL that is Ready=False, evaluated every 10s."""
    kubectl.apply({
        "apiVersion": "mlops.io/v1alpha1", "kind": "AlertRule", "metadata": {"name": name},
        "spec": {
            "condition": {"selector": {"kind": "ModelDeployment", "matchLabels": LABEL},
                          "statusCondition": {"type": "Ready", "status": "False"}},
            "interval": "10s", "grouping": GROUPING, "receivers": receivers,
            "annotations": {"summary": "{{ $labels.name }} is not ready"}, **spec,
        },
    })  # fmt: skip


def alerts(obj: Body) -> list[Body]:
    return obj.get("status", {}).get("alerts") or []


def alert_in(state: str, sent_to: tuple[str, ...] = ()) -> Callable[[Body], bool]:
    """The check: the rule has one instance, in ``state``, recorded as told (of that state) to ``sent_to``."""

    def check(obj: Body) -> bool:
        found = alerts(obj)
        if len(found) != 1 or found[0]["state"] != state:
            return False
        told = {s["receiver"]: s["state"] for s in found[0].get("sent") or []}
        return all(told.get(r) == state for r in sent_to)

    return check


def receiver(obj: Body, name: str) -> Body:
    return next((r for r in obj.get("status", {}).get("receivers") or [] if r["name"] == name), {})


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def wait_requests(kubectl: Kubectl, server: Capture, what: str, check: Callable[[list[Request]], bool],
                  timeout: float = 30) -> list[Request]:  # fmt: skip
    def probe() -> list[Request] | None:
        got = server.received()
        if not check(got):
            raise AssertionError(f"{len(got)} requests: {[r.body for r in got]}")
        return got

    return kubectl.wait_for(probe, timeout=timeout, what=what)  # type: ignore[no-any-return]


def assert_nowhere(kubectl: Kubectl, tmp_path: Path, *secrets: str) -> None:
    """None of ``secrets`` is in the namespace's AlertRules, in its Events, nor in any operator's log of the test."""
    places = {
        "alertrules": kubectl.run("get", "alertrules", "-o", "json").stdout,
        "events": kubectl.run("get", "events", "-o", "json").stdout,
        **{p.name: p.read_text(errors="replace") for p in tmp_path.glob("operator-*.log")},
    }
    assert any(p.startswith("operator-") for p in places)
    leaks = [(s, place) for s in secrets for place, text in places.items() if s.lower() in text.lower()]
    assert not leaks, f"secret values found (value, where): {leaks}"


# --- the tests -----------------------------------------------------------------------------------------------------


def test_slack_and_pagerduty_are_notified_and_pagerduty_resolves_the_same_alert_after_a_kill(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path, capture: Callable[[Answering], Capture],
    restarted: Callable[[OperatorProcess], OperatorProcess],
) -> None:  # fmt: skip
    slack, pagerduty = capture(SLACK_OK), capture(PAGERDUTY_OK)
    token, routing_key = "XyZsecret123slackTok", "R0utingKey-5e1f2b7c9d"
    slack_url = slack.url(f"/services/T000/B000/{token}")
    secret(kubectl, "slack", url=slack_url)
    secret(kubectl, "pagerduty", key=routing_key, url=pagerduty.url("/v2/enqueue"))
    given_broken_deployment(kubectl, "broken")

    given_rule(kubectl, "serving-down", severity="critical", receivers=[
        {"name": "chat", "slack": {"webhookUrlSecretRef": ref("slack", "url")}},
        {"name": "pager", "pagerduty": {"routingKeySecretRef": ref("pagerduty", "key"),
                                        "urlSecretRef": ref("pagerduty", "url")}},
    ])  # fmt: skip
    obj = wait_status(kubectl, "alertrule", "serving-down", "firing, told to both",
                      alert_in("firing", ("chat", "pager")), timeout=30)  # fmt: skip
    alert = alerts(obj)[0]
    fp = alert["fingerprint"]
    assert obj["status"]["state"] == "firing"
    assert condition(obj, "Ready")["status"] == "True", obj["status"]
    assert alert["labels"] == {"alertname": "serving-down", "severity": "critical", "kind": "ModelDeployment",
                               "name": "broken", "namespace": kubectl.namespace}  # fmt: skip

    # Slack: an incoming-webhook message with a fallback text and one attachment.
    [message] = wait_requests(kubectl, slack, "Slack's message", lambda got: len(got) >= 1)
    assert message.path == f"/services/T000/B000/{token}"
    assert message.headers["Content-Type"].startswith("application/json")
    assert message.body["text"] == "[FIRING:1] serving-down (critical)", message.body
    [attachment] = message.body["attachments"]
    assert attachment["color"] == "danger" and attachment["title"] == message.body["text"]
    assert "*FIRING* broken is not ready" in attachment["text"] and "`name=broken`" in attachment["text"]
    assert attachment["footer"] == f"AlertRule {kubectl.namespace}/serving-down"

    # PagerDuty: one Events API v2 trigger, deduplicated by the instance.
    [trigger] = wait_requests(kubectl, pagerduty, "PagerDuty's trigger", lambda got: len(got) >= 1)
    dedup = f"{kubectl.namespace}/serving-down/{fp}"
    assert trigger.path == "/v2/enqueue" and trigger.headers["Content-Type"].startswith("application/json")
    event = trigger.body
    assert event["routing_key"] == routing_key and event["event_action"] == "trigger"
    assert event["dedup_key"] == dedup
    assert event["payload"]["summary"] == "broken is not ready"
    assert event["payload"]["source"] == f"{kubectl.namespace}/broken"
    assert event["payload"]["severity"] == "critical"
    assert at(event["payload"]["timestamp"]) == at(alert["firedAt"])

    # Killed while the alert fires; the next operator resolves it.
    op = restarted(operator)
    kubectl.run("delete", "modeldeployment", "broken")
    obj = wait_status(kubectl, "alertrule", "serving-down", "resolved, told to both",
                      alert_in("resolved", ("chat", "pager")), timeout=60)  # fmt: skip
    assert alerts(obj)[0]["fingerprint"] == fp and obj["status"]["state"] == "inactive"
    time.sleep(2)  # anything sent twice would come now
    sent = [r.body for r in pagerduty.received()]
    resolves = [e for e in sent if e["event_action"] == "resolve"]
    triggers = [e for e in sent if e["event_action"] == "trigger"]
    assert resolves == [{"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup}], sent
    # A trigger sent again would have to be the same PagerDuty alert; and since the first was recorded in status
    # before the kill, none is sent again.
    assert {t["dedup_key"] for t in triggers} == {dedup}, triggers
    assert [e["event_action"] for e in sent] == ["trigger", "resolve"], sent
    texts = [r.body["text"] for r in slack.received()]
    assert texts == ["[FIRING:1] serving-down (critical)", "[RESOLVED] serving-down (critical)"], texts
    assert slack.received()[-1].body["attachments"][0]["color"] == "good"

    op.stop()
    assert_nowhere(kubectl, tmp_path, token, slack_url, routing_key)


def test_a_failing_webhook_is_retried_with_backoff_while_slack_is_notified_on_time(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path, capture: Callable[[Answering], Capture],
) -> None:  # fmt: skip
    def flaky(n: int, request: Request) -> Answer:
        if n <= 2:
            return Answer(500, "upstream down")
        if n == 3:
            return Answer(200, "", delay=4)  # the receiver's timeout is 2s
        return Answer(200, "")

    hook, slack = capture(flaky), capture(SLACK_OK)
    hook_token, slack_token = "HookPathTok-93be4a", "XyZsecret456slackTok"
    hook_url, slack_url = hook.url(f"/alerts/{hook_token}"), slack.url(f"/services/T000/B000/{slack_token}")
    secret(kubectl, "receivers", hook=hook_url, slack=slack_url)
    given_broken_deployment(kubectl, "broken")

    given_rule(kubectl, "serving-down", receivers=[
        {"name": "hook", "webhook": {"urlSecretRef": ref("receivers", "hook")}, "timeout": "2s"},
        {"name": "chat", "slack": {"webhookUrlSecretRef": ref("receivers", "slack")}},
    ])  # fmt: skip

    # The webhook fails (HTTP 500): the rule is not Ready and says which receiver and why.
    def failing_with(error: str) -> Callable[[Body], bool]:
        def check(obj: Body) -> bool:
            r = receiver(obj, "hook")
            return r.get("state") == "failing" and error in (r.get("lastError") or "")

        return check

    obj = wait_status(kubectl, "alertrule", "serving-down", "the webhook failing with HTTP 500",
                      failing_with("HTTP 500"), timeout=30)  # fmt: skip
    hook_status = receiver(obj, "hook")
    assert hook_status["attempts"] >= 1 and hook_status.get("nextTry"), hook_status
    assert at(hook_status["nextTry"]) > at(hook_status["lastAttempt"]), hook_status
    ready = condition(obj, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ReceiverFailing", ready
    assert ready["message"].startswith("receiver hook: HTTP 500"), ready

    # Slack was told at once, when the instance fired, not after the webhook's retries.
    fired = at(alerts(obj)[0]["firedAt"])
    [message] = wait_requests(kubectl, slack, "Slack's message", lambda got: len(got) >= 1, timeout=10)
    assert 0 <= (message.at - fired).total_seconds() < 3, (message.at, fired)
    assert message.body["text"] == "[FIRING:1] serving-down (warning)"

    obj = wait_status(kubectl, "alertrule", "serving-down", "the webhook timing out",
                      failing_with("timed out after 2s"), timeout=20)  # fmt: skip
    assert receiver(obj, "hook")["attempts"] >= 3, receiver(obj, "hook")
    assert condition(obj, "Ready")["reason"] == "ReceiverFailing"

    def delivered(obj: Body) -> bool:
        r = receiver(obj, "hook")
        return r.get("state") == "ok" and condition(obj, "Ready").get("status") == "True"

    obj = wait_status(kubectl, "alertrule", "serving-down", "the webhook delivered", delivered, timeout=30)
    hook_status = receiver(obj, "hook")
    assert hook_status["attempts"] == 0 and not hook_status.get("lastError") and not hook_status.get("nextTry")
    assert hook_status.get("lastSuccess"), hook_status

    attempts = hook.received()
    assert len(attempts) == 4, [(a.at, a.body.get("status")) for a in attempts]
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(attempts)]
    # Backoff of 2s, 4s and 8s after each failure; the third attempt failed only after its 2s timeout.
    for gap, least in zip(gaps, (2, 4, 2 + 8), strict=True):
        assert least - 0.2 <= gap <= least + 3, gaps
    assert gaps[0] < gaps[1] < gaps[2], gaps

    payload = attempts[-1].body
    assert payload["version"] == "4" and payload["status"] == "firing" and payload["receiver"] == "hook", payload
    assert payload["groupKey"] == f"{kubectl.namespace}/serving-down/hook"
    assert payload["groupLabels"] == {"alertname": "serving-down", "namespace": kubectl.namespace}
    [alert] = payload["alerts"]
    assert alert["labels"]["alertname"] == "serving-down" and alert["status"] == "firing"
    assert alert["fingerprint"] == alerts(obj)[0]["fingerprint"] and alert["endsAt"] == "0001-01-01T00:00:00Z"
    # Every attempt carried the same notification.
    assert all(a.body == payload for a in attempts), [a.body for a in attempts]
    # The webhook's retries re-sent nothing to Slack.
    assert len(slack.received()) == 1, [r.body for r in slack.received()]

    operator.stop()
    assert_nowhere(kubectl, tmp_path, hook_token, hook_url, slack_token, slack_url)


def test_a_kill_neither_restarts_for_nor_repeats_nor_loses_a_notification(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path, capture: Callable[[Answering], Capture],
    restarted: Callable[[OperatorProcess], OperatorProcess],
) -> None:  # fmt: skip
    hook = capture(WEBHOOK_OK)
    secret(kubectl, "hook", url=hook.url("/alerts"))
    given_broken_deployment(kubectl, "broken")
    given_rule(kubectl, "slow-to-fire", receivers=[
        {"name": "events", "event": {}},
        {"name": "hook", "webhook": {"urlSecretRef": ref("hook", "url")}},
    ], **{"for": "30s"})  # fmt: skip

    # Killed while pending: the next operator keeps counting `for` from when it started to hold.
    obj = wait_status(kubectl, "alertrule", "slow-to-fire", "pending", alert_in("pending"), timeout=20)
    active_at = alerts(obj)[0]["activeAt"]
    op = restarted(operator)
    obj = wait_status(kubectl, "alertrule", "slow-to-fire", "firing, told to both",
                      alert_in("firing", ("events", "hook")), timeout=60)  # fmt: skip
    alert = alerts(obj)[0]
    fp = alert["fingerprint"]
    assert alert["activeAt"] == active_at, (alert, active_at)
    waited = (at(alert["firedAt"]) - at(active_at)).total_seconds()
    assert 30 <= waited <= 45, waited
    assert [r.body["status"] for r in hook.received()] == ["firing"]

    # Killed while firing: the next operator neither repeats the firing notification nor misses the resolution.
    op = restarted(op)
    kubectl.run("label", "modeldeployment", "broken", "alerting-")
    obj = wait_status(kubectl, "alertrule", "slow-to-fire", "resolved, told to both",
                      alert_in("resolved", ("events", "hook")), timeout=30)  # fmt: skip
    assert alerts(obj)[0]["fingerprint"] == fp
    time.sleep(2)  # anything sent twice would come now
    notified = [(r.body["status"], [(a["status"], a["fingerprint"]) for a in r.body["alerts"]])
                for r in hook.received()]  # fmt: skip
    assert notified == [("firing", [("firing", fp)]), ("resolved", [("resolved", fp)])], notified
    resolution = hook.received()[-1].body["alerts"][0]
    assert at(resolution["endsAt"]) == at(alerts(obj)[0]["resolvedAt"]), resolution

    # Events on the rule and on the ModelDeployment: one firing, one resolution.
    for name in ("slow-to-fire", "broken"):
        assert len(events(kubectl, name, "AlertFiring")) == 1, events(kubectl, name, "AlertFiring")
        [resolved] = events(kubectl, name, "AlertResolved")
        assert resolved["type"] == "Normal" and resolved["message"].startswith("slow-to-fire resolved (warning)")
    op.stop()


def test_secrets_never_show_in_status_events_or_logs(
    kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path, capture: Callable[[Answering], Capture],
) -> None:  # fmt: skip
    # Receivers that fail in ways whose errors could quote their address: an answer echoing the URL and the key, a
    # closed port.
    echo = capture(lambda n, r: Answer(500, f"no route for {r.path} with key {json.dumps(r.body)[:300]}"))
    hook_token, query_token, routing_key = "EchoPathTok-7d61c2aa", "QueryTok-0f3e8b11", "PdKeyLeak-44a1c9e3b2"
    hook_url = echo.url(f"/hooks/{hook_token}?token={query_token}")
    closed_token = "ClosedPortTok-b52d90"
    closed_url = f"http://127.0.0.1:{free_port()}/services/T000/B000/{closed_token}"
    secret(kubectl, "leaky", hook=hook_url, slack=closed_url, key=routing_key, pd=echo.url("/v2/enqueue"))
    given_broken_deployment(kubectl, "broken")
    given_rule(kubectl, "leaky", receivers=[
        {"name": "hook", "webhook": {"urlSecretRef": ref("leaky", "hook")}},
        {"name": "chat", "slack": {"webhookUrlSecretRef": ref("leaky", "slack")}},
        {"name": "pager", "pagerduty": {"routingKeySecretRef": ref("leaky", "key"),
                                        "urlSecretRef": ref("leaky", "pd")}},
    ])  # fmt: skip
    given_rule(kubectl, "unconfigured", receivers=[
        {"name": "chat", "slack": {"webhookUrlSecretRef": ref("slack-nowhere", "url")}},
    ])  # fmt: skip
    given_rule(kubectl, "wrong-key", receivers=[
        {"name": "chat", "slack": {"webhookUrlSecretRef": ref("leaky", "nope")}},
    ])  # fmt: skip

    def tried_twice(obj: Body) -> bool:
        return all(receiver(obj, r).get("attempts", 0) >= 2 for r in ("hook", "chat", "pager"))

    obj = wait_status(kubectl, "alertrule", "leaky", "every receiver failing twice", tried_twice, timeout=30)
    hook, chat, pager = (receiver(obj, r) for r in ("hook", "chat", "pager"))
    assert hook["lastError"].startswith("HTTP 500: no route for <redacted>"), hook
    assert chat["lastError"] == "connection refused", chat
    # PagerDuty's endpoint is a Secret too: its path is masked with the routing key.
    echoed = 'HTTP 500: no route for <redacted> with key {"routing_key": "<redacted>"'
    assert pager["lastError"].startswith(echoed), pager
    assert condition(obj, "Ready")["reason"] == "ReceiverFailing"

    obj = wait_status(kubectl, "alertrule", "unconfigured", "SecretMissing",
                      condition_is("Ready", "False", "SecretMissing"), timeout=30)  # fmt: skip
    ready = condition(obj, "Ready")
    assert "slack-nowhere" in ready["message"] and ready["message"].startswith("receiver chat: SecretMissing"), ready
    assert receiver(obj, "chat")["state"] == "failing"
    obj = wait_status(kubectl, "alertrule", "wrong-key", "SecretMissing",
                      condition_is("Ready", "False", "SecretMissing"), timeout=30)  # fmt: skip
    assert "Secret leaky has no key nope" in condition(obj, "Ready")["message"], condition(obj, "Ready")

    operator.stop()
    assert_nowhere(kubectl, tmp_path, hook_token, query_token, hook_url, closed_token, closed_url, routing_key,
                   echo.url("/hooks/"))  # fmt: skip
