"""What the registry checks of each ModelVersion itself: its artifact (read and hashed, under the outbound policy)
and its reference profile (computed once into a ConfigMap). Both fold their findings into a status; a source that
does not answer gives the delay before the next attempt."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from mlops_operator import GROUP, kube
from mlops_operator.builders import profile as build_profile
from mlops_operator.logic.conditions import get_condition, set_condition
from mlops_operator.logic.times import now_rfc3339 as now
from mlops_operator.outbound import Policy, Refused
from mlops_operator.storage import UNREADABLE_SCHEMES, SourceUnreachable, redact, scheme, sha256

# The longest wait between two checks of an unreachable source.
MAX_BACKOFF_SECONDS = 300
CONFIGMAP_LIMIT = 1_000_000
# Concurrent artifact reads and profiles: bounded, so that many new versions do not exhaust memory or threads.
_artifact_slots = asyncio.Semaphore(8)
_profile_slots = asyncio.Semaphore(1)


# What the checks own in a status.
FIELDS = ("artifact", "profile")
CONDITIONS = ("ArtifactVerified", "ProfileReady")


def settled(spec: dict[str, Any], status: dict[str, Any]) -> bool:
    """Whether nothing is left to check for ``spec``: the artifact verified or found not to match its checksum
    (or of a kind only the model server reads), the reference profile computed or failed for good (or none asked
    for). A refusal by the outbound policy is not settled: it is looked at again once per process."""
    artifact = status.get("artifact") or {}
    done = scheme(spec["source"]) in UNREADABLE_SCHEMES or (
        artifact.get("checksum") == spec.get("checksum") and bool(artifact.get("verified") or artifact.get("mismatch"))
    )
    reference = spec.get("reference")
    if not done or not reference:
        return done and not status.get("profile")
    ready = get_condition(status.get("conditions"), "ProfileReady") or {}
    profiled = ready.get("status") == "True" or ready.get("reason") == "ProfileFailed"
    return (status.get("profile") or {}).get("uri") == redact(reference["uri"]) and profiled


def retry_delay(attempts: int) -> float:
    """Seconds before attempt ``attempts + 1`` at an unreachable source: 5 s doubling, at most 5 minutes."""
    return float(min(MAX_BACKOFF_SECONDS, 5 * 2 ** (attempts - 1)))


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
            # Final for this spec and this policy; looked at again on the next pass (a restart with other flags, a
            # spec change), which costs no read. The same refusal again changes nothing.
            if artifact.get("refused") and artifact.get("error") == str(exc) and artifact.get("checksum") == expected:
                return None
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
            delay = retry_delay(attempts)
            status["artifact"] = {
                "verified": False, "checkedAt": now(), "attempts": attempts, "error": str(exc),
                **({"checksum": expected} if expected else {}),
            }  # fmt: skip
            status["conditions"] = set_condition(
                conditions, "ArtifactVerified", "False", "SourceUnreachable",
                f"{exc} (attempt {attempts}, next in {delay:.0f}s)", generation,
            )  # fmt: skip
            return delay
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
            delay = retry_delay(attempts)
            status["profile"] = {"configMap": name, "uri": uri, "attempts": attempts}
            status["conditions"] = set_condition(
                conditions, "ProfileReady", "False", "SourceUnreachable",
                f"{exc} (attempt {attempts}, next in {delay:.0f}s)", generation,
            )  # fmt: skip
            return delay
        except ProfileError as exc:
            status["profile"] = {"configMap": name, "uri": uri}
            status["conditions"] = set_condition(
                conditions, "ProfileReady", "False", "ProfileFailed", str(exc).replace(reference["uri"], uri),
                generation,
            )  # fmt: skip
            return None
    labels = {"app.kubernetes.io/managed-by": "mlops-operator", f"{GROUP}/model": spec["model"],
              f"{GROUP}/version": spec["version"]}  # fmt: skip
    await kube.apply(build_profile.configmap(body, name, {"profile.json": text}, labels))
    status["profile"] = {
        "configMap": name, "uri": uri, "rows": profile["rows"], "features": len(profile["features"]),
        "computedAt": now(),
    }  # fmt: skip
    status["conditions"] = set_condition(
        conditions, "ProfileReady", "True", "Profiled",
        f"{len(profile['features'])} features of {profile['rows']} rows in ConfigMap {name}", generation,
    )  # fmt: skip
    return None
