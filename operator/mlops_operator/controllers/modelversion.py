"""The ModelVersion controller: identity, artifact check, reference profile, stages and gates.

Per object (no lock): record the stage request, verify the artifact, compute the reference profile. Per model
(under a lock, so that one model's versions are decided one at a time): decide with ``logic.registry.plan`` which
version holds production and what each is granted, then write the statuses that change. The operator is the only
writer of ModelVersion status, so the statuses it wrote last (``_written``) are at least as fresh as what its
watch has delivered; they are used in preference to it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from typing import Any

import kopf

from mlops_operator import GROUP, VERSION, kube, metrics
from mlops_operator.controllers.intake import in_background, plain
from mlops_operator.logic import registry
from mlops_operator.logic.conditions import ConditionStatus, get_condition, set_condition
from mlops_operator.logic.conditions import now_rfc3339 as now
from mlops_operator.outbound import Policy, Refused
from mlops_operator.storage import UNREADABLE_SCHEMES, SourceUnreachable, redact, scheme, sha256

log = logging.getLogger(__name__)

KIND, PLURAL = "ModelVersion", "modelversions"
INDEX = "modelversions_by_model"
# The longest wait between two checks of an unreachable source.
MAX_BACKOFF_SECONDS = 300
CONFIGMAP_LIMIT = 1_000_000
# Concurrent artifact reads and profiles: bounded, so that many new versions do not exhaust memory or threads.
_artifact_slots = asyncio.Semaphore(8)
_profile_slots = asyncio.Semaphore(1)
_model_locks: dict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
# Kept as compact JSON: a parsed status costs about ten times its text in Python objects, and thousands of
# versions are kept.
_written: dict[str, str] = {}
# The rules' view of every version whose status this operator wrote (fresher than the index's).
_written_views: dict[str, registry.Version] = {}


def register(registry_: kopf.OperatorRegistry, policy: Policy) -> None:
    """Registers the handlers; ``policy`` decides which sources and datasets may be read."""

    @kopf.index(GROUP, VERSION, PLURAL, id=INDEX, registry=registry_)  # type: ignore[arg-type]
    def _index(body: kopf.Body, namespace: str, spec: kopf.Spec, **_: Any) -> dict[Any, Any]:
        # Per version: the rules' view, built once per event (decisions over thousands of versions of one model
        # then parse nothing), and the compact body as JSON text, parsed only for a version whose status is
        # written.
        compact = _compact(body)
        entry = (compact["metadata"]["uid"], _view(compact, compact["status"]), json.dumps(compact))
        return {(namespace, spec.get("model")): entry}

    async def _reconcile(body: kopf.Body, **kwargs: Any) -> None:
        started = time.monotonic()
        try:
            with kube.counting_writes() as writes:
                await reconcile(plain(body), kwargs[INDEX], policy)
        except Exception:
            metrics.RECONCILES.labels(KIND, "error").inc()
            raise
        else:
            metrics.RECONCILES.labels(KIND, "changed" if writes[0] else "unchanged").inc()
        finally:
            metrics.RECONCILE_SECONDS.labels(KIND).observe(time.monotonic() - started)

    for decorator in (kopf.on.create, kopf.on.update, kopf.on.resume):
        decorator(GROUP, VERSION, PLURAL, id="reconcile", registry=registry_, field="spec")(_reconcile)

    @kopf.on.event(GROUP, VERSION, PLURAL, id="deleted", registry=registry_,
                   when=lambda type, **_: type == "DELETED")  # fmt: skip
    async def _deleted(body: kopf.Body, **kwargs: Any) -> None:
        # Event handlers are not retried by kopf: failures are retried here, in the background.
        gone = plain(body)
        _retry_in_background(
            lambda: after_deletion(gone, kwargs[INDEX], policy), f"after deleting {gone['metadata']['name']}"
        )


def _retry_in_background(work: Any, what: str, attempts: int = 8) -> None:
    async def run() -> None:
        for attempt in range(attempts):
            try:
                await work()
                return
            except Exception as exc:
                delay = min(MAX_BACKOFF_SECONDS, 2**attempt)
                log.warning("%s failed (%s); retrying in %ss", what, exc, delay)
                await asyncio.sleep(delay)
        log.error("%s failed %d times; the next event or restart reconciles it", what, attempts)

    in_background(run())


async def after_deletion(gone: dict[str, Any], index: Any, policy: Policy) -> None:
    """A version is gone: a duplicate may take its identity over, and production may change hands."""
    _written.pop(gone["metadata"]["uid"], None)
    _written_views.pop(gone["metadata"]["uid"], None)
    for uid, view, text in _entries(index, gone["metadata"]["namespace"], gone["spec"]["model"]):
        if uid != gone["metadata"]["uid"] and view.version == str(gone["spec"]["version"]) and not view.claimed:
            sibling = json.loads(text)
            # Its artifact was never checked: a full reconcile, retried until the source answers.
            retry_in = await reconcile(sibling, index, policy, allow_retry=False)
            if retry_in is not None:
                await asyncio.sleep(retry_in)
                raise RuntimeError(f"the artifact of {sibling['metadata']['name']} is not verified yet")
    await decide_model(gone["metadata"]["namespace"], gone["spec"]["model"], index, trigger=None, exclude=gone)


def _compact(body: Any) -> dict[str, Any]:
    """What the model-level decisions need of a sibling: no managedFields or annotations (memory per object)."""
    meta = body["metadata"]
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "creationTimestamp", "generation") if k in meta},
        "spec": plain(body["spec"]),
        "status": plain(body.get("status") or {}),
        # The time of the current stage request, read from managedFields (which the compact body leaves out).
        "stageRequestedAt": request_time(body),
    }


def _status(body: dict[str, Any]) -> dict[str, Any]:
    """The freshest status of ``body``: the one written last by this operator, else the watched one."""
    written = _written.get(body["metadata"]["uid"])
    return json.loads(written) if written else body.get("status") or {}


def _entries(index: Any, namespace: str, model: str) -> list[tuple[str, registry.Version, str]]:
    """(uid, the freshest view, compact body as JSON) of every version of the model in the index."""
    return [(uid, _written_views.get(uid, view), text) for uid, view, text in index.get((namespace, model), [])]


# --- per object --------------------------------------------------------------------------------------------------


def request_time(body: dict[str, Any]) -> str:
    """When spec.stage got its value: the latest write of a manager owning spec.stage, else now."""
    times = [
        entry["time"]
        for entry in body["metadata"].get("managedFields") or []
        if entry.get("time") and "f:stage" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
    ]
    return max(times, key=lambda t: registry.parse_time(t)) if times else now()


def artifact_ok(spec: dict[str, Any], status: dict[str, Any]) -> bool:
    artifact = status.get("artifact") or {}
    if scheme(spec["source"]) in UNREADABLE_SCHEMES:
        return True
    return bool(artifact.get("verified")) and artifact.get("checksum") == spec.get("checksum")


async def check_artifact(spec: dict[str, Any], status: dict[str, Any], generation: int, policy: Policy) -> float | None:
    """Verifies the artifact unless already verified for this checksum; updates ``status``.

    Returns the delay before a retry when the source was unreachable.
    """
    source, expected = spec["source"], spec.get("checksum")
    conditions = status.get("conditions", [])
    if scheme(source) in UNREADABLE_SCHEMES:
        status["conditions"] = set_condition(
            conditions, "ArtifactVerified", "Unknown", "NotReadable",
            f"{scheme(source)}:// sources are read by the model server, which verifies the checksum when it loads",
            generation,
        )  # fmt: skip
        return None
    artifact = status.get("artifact") or {}
    if artifact.get("checksum") == expected and (artifact.get("verified") or artifact.get("mismatch")):
        # Verified, or a final mismatch: both stand until spec.checksum changes (source is immutable).
        return None
    async with _artifact_slots:
        try:
            digest = await asyncio.to_thread(sha256, source, policy)
        except Refused as exc:
            # Final for this spec and this policy; looked at again on the next reconcile (a restart with other
            # flags, a spec change), which costs no read.
            status["artifact"] = {
                "verified": False, "refused": True, "checkedAt": now(), "error": str(exc),
                **({"checksum": expected} if expected else {}),
            }  # fmt: skip
            status["conditions"] = set_condition(
                conditions, "ArtifactVerified", "False", Refused.reason, str(exc), generation
            )
            return None
        except SourceUnreachable as exc:
            same_request = artifact.get("checksum") == expected
            attempts = (int(artifact.get("attempts") or 0) if same_request else 0) + 1
            delay = min(MAX_BACKOFF_SECONDS, 5 * 2 ** (attempts - 1))
            status["artifact"] = {
                "verified": False, "checkedAt": now(), "attempts": attempts, "error": str(exc),
                **({"checksum": expected} if expected else {}),
            }  # fmt: skip
            status["conditions"] = set_condition(
                conditions, "ArtifactVerified", "False", "SourceUnreachable",
                f"{exc} (attempt {attempts}, next in {delay}s)", generation,
            )  # fmt: skip
            return float(delay)
    checked = {"sha256": f"sha256:{digest.sha256}", "size": digest.size, "checkedAt": now()}
    if expected and expected != checked["sha256"]:
        status["artifact"] = {"verified": False, "mismatch": True, "checksum": expected, **checked}
        status["conditions"] = set_condition(
            conditions, "ArtifactVerified", "False", "ChecksumMismatch",
            f"{redact(source)} has {checked['sha256']}, spec.checksum says {expected}", generation,
        )  # fmt: skip
        return None
    status["artifact"] = {"verified": True, **({"checksum": expected} if expected else {}), **checked}
    message = f"{digest.size} bytes, {checked['sha256']}" + (" matches spec.checksum" if expected else "")
    status["conditions"] = set_condition(conditions, "ArtifactVerified", "True", "Verified", message, generation)
    return None


def _profile_text(reference: dict[str, Any], policy: Policy) -> tuple[dict[str, Any], str]:
    """Profile and its JSON text; runs in a worker thread (numpy and pyarrow are imported there, on first use)."""
    from mlops_operator.profiling import ProfileError, profile_dataset

    profile = profile_dataset(
        reference["uri"], policy, reference.get("format"), reference.get("features"), reference.get("prediction")
    )
    text = json.dumps(profile, separators=(",", ":"), allow_nan=False)
    if len(text) > CONFIGMAP_LIMIT:
        raise ProfileError(
            f"the profile has {len(text)} bytes, more than a ConfigMap holds: choose columns with "
            "spec.reference.features"
        )
    return profile, text


async def ensure_profile(
    body: dict[str, Any], spec: dict[str, Any], status: dict[str, Any], generation: int, policy: Policy
) -> float | None:
    """Computes the reference profile once per version (again only if spec.reference.uri changes).

    Returns the delay before a retry when the dataset was unreachable; a dataset that cannot be profiled is final.
    """
    from mlops_operator.profiling import ProfileError

    reference = spec.get("reference")
    conditions = status.get("conditions", [])
    if not reference:
        status.pop("profile", None)
        status["conditions"] = [c for c in conditions if c.get("type") != "ProfileReady"]
        return None
    current = status.get("profile") or {}
    ready = get_condition(conditions, "ProfileReady") or {}
    uri = redact(reference["uri"])
    if current.get("uri") == uri and (ready.get("status") == "True" or ready.get("reason") == "ProfileFailed"):
        return None
    meta = body["metadata"]
    name = f"{meta['name']}-profile"
    async with _profile_slots:
        try:
            profile, text = await asyncio.to_thread(_profile_text, reference, policy)
        except Refused as exc:
            status["profile"] = {"configMap": name, "uri": uri}
            status["conditions"] = set_condition(
                conditions, "ProfileReady", "False", Refused.reason, str(exc), generation
            )
            return None
        except SourceUnreachable as exc:
            attempts = int(current.get("attempts") or 0) + 1 if current.get("uri") == uri else 1
            delay = min(MAX_BACKOFF_SECONDS, 5 * 2 ** (attempts - 1))
            status["profile"] = {"configMap": name, "uri": uri, "attempts": attempts}
            status["conditions"] = set_condition(
                conditions, "ProfileReady", "False", "SourceUnreachable",
                f"{exc} (attempt {attempts}, next in {delay}s)", generation,
            )  # fmt: skip
            return float(delay)
        except ProfileError as exc:
            status["profile"] = {"configMap": name, "uri": uri}
            status["conditions"] = set_condition(
                conditions, "ProfileReady", "False", "ProfileFailed", str(exc).replace(reference["uri"], uri),
                generation,
            )  # fmt: skip
            return None
    labels = {"app.kubernetes.io/managed-by": "mlops-operator", f"{GROUP}/model": spec["model"],
              f"{GROUP}/version": spec["version"]}  # fmt: skip
    await kube.apply_configmap(meta["namespace"], name, {"profile.json": text}, body, labels)
    status["profile"] = {
        "configMap": name, "uri": uri, "rows": profile["rows"], "features": len(profile["features"]),
        "computedAt": now(),
    }  # fmt: skip
    status["conditions"] = set_condition(
        conditions, "ProfileReady", "True", "Profiled",
        f"{len(profile['features'])} features of {profile['rows']} rows in ConfigMap {name}", generation,
    )  # fmt: skip
    return None


# What the per-object work owns in status; everything else is decided per model, under its lock.
OWN_FIELDS = ("requested", "artifact", "profile", "observedGeneration")
OWN_CONDITIONS = ("ArtifactVerified", "ProfileReady")


async def reconcile(body: dict[str, Any], index: Any, policy: Policy, allow_retry: bool = True) -> float | None:
    """Brings one ModelVersion's status up to date, and its model's production holder with it.

    Returns the delay before a retry is due (an unreachable artifact or dataset); with ``allow_retry`` it raises
    kopf's TemporaryError instead, so that kopf calls again.
    """
    meta, spec = body["metadata"], body["spec"]
    generation = meta.get("generation", 1)
    work = json.loads(json.dumps(_status(body)))
    requested = work.get("requested") or {}
    if requested.get("stage") != spec.get("stage", "development"):
        work["requested"] = {"stage": spec.get("stage", "development"), "at": request_time(body)}
    work["observedGeneration"] = generation

    views = [view for uid, view, _ in _entries(index, meta["namespace"], spec["model"])
             if uid != meta["uid"] and view.version == str(spec["version"])]  # fmt: skip
    owner = registry.identity_holders([*views, _view(body, work)])[(spec["model"], str(spec["version"]))]
    delays = []
    if owner.name == meta["name"]:
        # Slow (reads the artifact and the dataset): done before taking the model's lock.
        delays = [d for d in (await check_artifact(spec, work, generation, policy),
                              await ensure_profile(body, spec, work, generation, policy)) if d is not None]  # fmt: skip
    own = {key: work.get(key) for key in OWN_FIELDS}
    own_conditions = [c for c in work.get("conditions", []) if c.get("type") in OWN_CONDITIONS]
    await decide_model(meta["namespace"], spec["model"], index, trigger=(body, own, own_conditions))
    retry_in = min(delays) if delays else None
    if retry_in is not None and allow_retry:
        raise kopf.TemporaryError(f"source unreachable, retrying in {retry_in:.0f}s", delay=retry_in)
    return retry_in


# --- per model ---------------------------------------------------------------------------------------------------


def _view(body: dict[str, Any], status: dict[str, Any]) -> registry.Version:
    meta, spec = body["metadata"], body["spec"]
    created = registry.parse_time(meta.get("creationTimestamp"))
    history = status.get("history") or []
    desired = spec.get("stage", "development")
    requested = status.get("requested") or {}
    if requested.get("stage") == desired:
        requested_at = registry.parse_time(requested.get("at"), created)
    else:
        # A new request its own handler has not recorded yet: its time is the write's, as the handler will record
        # it, never the previous request's (which could make it win and then lose).
        requested_at = registry.parse_time(body.get("stageRequestedAt") or request_time(body), created)
    return registry.Version(
        name=meta["name"],
        model=spec["model"],
        version=str(spec["version"]),
        created=created,
        desired=desired,
        requested_at=requested_at,
        granted=status.get("stage"),
        metrics={
            m["name"]: registry.MetricValue(float(m["value"]), bool(m.get("lowerIsBetter", False)))
            for m in spec.get("metrics") or []
        },
        gates=list(spec.get("gates") or []),
        artifact_ok=artifact_ok(spec, status),
        superseded=bool(history) and history[-1].get("reason") == "SupersededBy",
        # Acted on before and not refused as a duplicate: it holds its (model, version).
        claimed=bool(status.get("conditions"))
        and (get_condition(status["conditions"], "Ready") or {}).get("reason") != "DuplicateVersion",
    )


async def decide_model(
    namespace: str,
    model: str,
    index: Any,
    trigger: tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]] | None,
    exclude: dict[str, Any] | None = None,
) -> None:
    """Applies the model's plan: the trigger's status (its body, and the fields and conditions its own work
    produced) and that of every sibling whose grant changes.

    Everything is read inside the lock, from the index and from the statuses written last, so that a decision
    never rests on a view older than one already written.
    """
    async with _model_locks[(namespace, model)]:
        skip = {b["metadata"]["uid"] for b in (trigger[0] if trigger else None, exclude) if b is not None}
        entries = [(view, text) for uid, view, text in _entries(index, namespace, model) if uid not in skip]
        views = [view for view, _ in entries]
        texts = {view.name: text for view, text in entries}
        trigger_entry = None
        if trigger is not None:
            body, own, own_conditions = trigger
            status = {**json.loads(json.dumps(_status(body))), **{k: v for k, v in own.items() if v is not None}}
            for key in OWN_FIELDS:
                if own.get(key) is None:
                    status.pop(key, None)
            kept = [c for c in status.get("conditions", []) if c.get("type") not in OWN_CONDITIONS]
            status["conditions"] = own_conditions + kept
            trigger_entry = (body, status)
            views.append(_view(body, status))
        plan = registry.plan(views, only={trigger[0]["metadata"]["name"]} if trigger else set())
        # Archive the old holder before granting the new one: never two production versions at once.
        for name in sorted(plan.verdicts, key=lambda n: plan.verdicts[n].granted == registry.PRODUCTION):
            if trigger_entry is not None and name == trigger_entry[0]["metadata"]["name"]:
                body, status = trigger_entry
            else:
                body = json.loads(texts[name])
                status = _status(body)
            await _write(body, status, _status(body), plan.verdicts[name])


def _ready(conditions: list[dict[str, Any]], verdict: registry.Verdict) -> tuple[ConditionStatus, str, str]:
    if verdict.reason == "DuplicateVersion":
        return "False", verdict.reason, verdict.message
    artifact = get_condition(conditions, "ArtifactVerified")
    if artifact is None:
        return "Unknown", "Verifying", "checking the artifact"
    if artifact["status"] == "False":
        return "False", artifact["reason"], artifact["message"]
    profile = get_condition(conditions, "ProfileReady") or {}
    if profile.get("reason") == Refused.reason:
        return "False", Refused.reason, f"spec.reference: {profile['message']}"
    if verdict.ready:
        return "True", "Granted", verdict.message
    return "False", verdict.reason, verdict.message


def apply_verdict(status: dict[str, Any], verdict: registry.Verdict, generation: int | None, stamp: str) -> bool:
    """Folds ``verdict`` into ``status``; True when the granted stage changed."""
    granted = verdict.granted
    transition = granted is not None and granted != status.get("stage")
    if granted is not None and transition:
        status["stage"] = granted
        status["history"] = registry.append_history(
            status.get("history") or [], granted, verdict.transition_reason, verdict.transition_message, stamp
        )
    status["gates"] = verdict.gates
    if verdict.comparison is None:
        status.pop("comparison", None)
    else:
        status["comparison"] = verdict.comparison
    conditions = [c for c in status.get("conditions", []) if c.get("type") != "GatesPassed"]
    if verdict.gates and verdict.reason != "DuplicateVersion":
        failing = [g for g in verdict.gates if not g["passed"]]
        conditions = set_condition(
            status.get("conditions", []),
            "GatesPassed",
            "False" if failing else "True",
            "GatesFailed" if failing else "GatesPassed",
            "; ".join(g.get("reason", g["metric"]) for g in failing) or f"all {len(verdict.gates)} gates pass",
            generation,
        )
    status["conditions"] = set_condition(conditions, "Ready", *_ready(conditions, verdict), generation)
    return transition


async def _write(
    body: dict[str, Any], status: dict[str, Any], stored: dict[str, Any], verdict: registry.Verdict
) -> None:
    meta = body["metadata"]
    status = json.loads(json.dumps(status))
    transition = apply_verdict(status, verdict, status.get("observedGeneration"), now())
    patch = kube.merge_patch(stored, status)
    if patch:
        await kube.patch_status(KIND, PLURAL, meta["namespace"], meta["name"], patch)
    _written[meta["uid"]] = json.dumps(status, separators=(",", ":"))
    _written_views[meta["uid"]] = _view(body, status)
    if transition:
        kopf.info(
            kopf.Body(body),  # type: ignore[arg-type]
            reason=verdict.transition_reason,
            message=verdict.transition_message or f"stage {verdict.granted}",
        )
