"""Which ModelVersion a deployment serves, and whether it can be served."""

from __future__ import annotations

from typing import Any

import pytest

from mlops_operator.logic.resolution import Resolved, Unresolved, holder, resolve, servable

Body = dict[str, Any]

VERIFIED = {"type": "ArtifactVerified", "status": "True", "reason": "ChecksumMatched", "message": "sha256 ok"}
DUPLICATE = {"type": "Ready", "status": "False", "reason": "DuplicateVersion", "message": "iris 2.0.0 is iris-2's"}


def mv(name: str, version: Any, conditions: list[Body] | None = None, stage: str | None = None) -> Body:
    status: Body = {"conditions": [VERIFIED] if conditions is None else conditions}
    if stage is not None:
        status["stage"] = stage
    return {"metadata": {"name": name}, "spec": {"model": "iris", "version": version}, "status": status}


def artifact(status: str, reason: str | None = None, message: str | None = None) -> Body:
    condition: Body = {"type": "ArtifactVerified", "status": status}
    if reason is not None:
        condition["reason"] = reason
    if message is not None:
        condition["message"] = message
    return condition


# --- resolve: found ------------------------------------------------------------------------------------------------


def test_resolves_by_version() -> None:
    wanted = mv("iris-2", "2.0.0")

    found = resolve([mv("iris-1", "1.0.0"), wanted], "ml", "iris", "2.0.0", None)

    assert found == Resolved("iris-2", "2.0.0", wanted["spec"], wanted["status"])


def test_a_version_written_as_a_number_matches_its_text() -> None:
    found = resolve([mv("iris-2", 2)], "ml", "iris", "2", None)

    assert isinstance(found, Resolved)
    assert found.version == "2"


def test_resolves_by_the_followed_stage() -> None:
    production = mv("iris-1", "1.0.0", stage="Production")

    found = resolve([production, mv("iris-2", "2.0.0", stage="Staging")], "ml", "iris", None, "Production")

    assert found == Resolved("iris-1", "1.0.0", production["spec"], production["status"])


def test_a_version_without_status_is_not_ready() -> None:
    # The object holds no status at all: it cannot be served (its artifact was never checked).
    bare = {"metadata": {"name": "iris-1"}, "spec": {"version": "1.0.0"}}

    found = resolve([bare], "ml", "iris", "1.0.0", None)

    assert found == Unresolved("VersionNotReady", "ModelVersion iris-1 (iris 1.0.0): its artifact is not checked yet")


# --- resolve: not found --------------------------------------------------------------------------------------------


def test_no_such_version_is_not_found() -> None:
    found = resolve([mv("iris-1", "1.0.0")], "ml", "iris", "3.0.0", None)

    assert found == Unresolved("VersionNotFound", "no ModelVersion of model iris has version 3.0.0 in ml")


def test_no_version_holding_the_stage_is_not_found() -> None:
    found = resolve([mv("iris-1", "1.0.0", stage="Staging")], "ml", "iris", None, "Production")

    assert found == Unresolved("VersionNotFound", "no version of model iris holds Production in ml")


def test_no_versions_at_all_is_not_found() -> None:
    assert resolve([], "ml", "iris", "1.0.0", None) == Unresolved(
        "VersionNotFound", "no ModelVersion of model iris has version 1.0.0 in ml"
    )
    assert resolve(iter([]), "ml", "iris", None, "Staging") == Unresolved(
        "VersionNotFound", "no version of model iris holds Staging in ml"
    )


# --- resolve: not ready --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conditions", "why"),
    [
        pytest.param([], "its artifact is not checked yet", id="artifact-not-checked"),
        pytest.param(
            [artifact("False", "ChecksumMismatch", "sha256 abc != def")],
            "ChecksumMismatch: sha256 abc != def",
            id="checksum-mismatch",
        ),
        pytest.param([artifact("False")], "ArtifactNotVerified: ", id="refused-without-reason"),
        pytest.param(
            [artifact("Unknown", "Checking", "reading s3://models/iris/2")],
            "Checking: reading s3://models/iris/2",
            id="still-checking",
        ),
        pytest.param([VERIFIED, DUPLICATE], f"DuplicateVersion: {DUPLICATE['message']}", id="duplicate"),
    ],
)
def test_a_version_that_cannot_be_served_is_not_ready(conditions: list[Body], why: str) -> None:
    found = resolve([mv("iris-2", "2.0.0", conditions)], "ml", "iris", "2.0.0", None)

    assert found == Unresolved("VersionNotReady", f"ModelVersion iris-2 (iris 2.0.0): {why}")


def test_a_followed_version_that_cannot_be_served_is_not_ready() -> None:
    found = resolve([mv("iris-2", "2.0.0", [], stage="Production")], "ml", "iris", None, "Production")

    assert found == Unresolved("VersionNotReady", "ModelVersion iris-2 (iris 2.0.0): its artifact is not checked yet")


# --- servable ------------------------------------------------------------------------------------------------------


def test_a_verified_artifact_is_servable() -> None:
    assert servable(mv("iris-1", "1.0.0")) == (True, "")


def test_an_artifact_only_the_model_server_reads_is_servable() -> None:
    not_readable = artifact("Unknown", "NotReadable", "the operator cannot open this format")

    assert servable(mv("iris-1", "1.0.0", [not_readable])) == (True, "")
    assert isinstance(resolve([mv("iris-1", "1.0.0", [not_readable])], "ml", "iris", "1.0.0", None), Resolved)


def test_not_readable_only_counts_when_unknown() -> None:
    refused = artifact("False", "NotReadable", "no such key")

    assert servable(mv("iris-1", "1.0.0", [refused])) == (False, "NotReadable: no such key")


def test_a_duplicate_is_not_servable_even_when_verified() -> None:
    ok, why = servable(mv("iris-2b", "2.0.0", [VERIFIED, DUPLICATE]))

    assert not ok
    assert why == "DuplicateVersion: iris 2.0.0 is iris-2's"


def test_a_version_without_status_is_not_servable() -> None:
    assert servable({"metadata": {"name": "iris-1"}, "spec": {"version": "1.0.0"}}) == (
        False,
        "its artifact is not checked yet",
    )


# --- holder --------------------------------------------------------------------------------------------------------


def test_the_holder_is_chosen_over_a_duplicate_that_sorts_first() -> None:
    duplicate = mv("a-iris-2", "2.0.0", [VERIFIED, DUPLICATE])
    original = mv("iris-2", "2.0.0")

    assert holder([duplicate, original]) is original
    assert holder([original, duplicate]) is original
    assert resolve([duplicate, original], "ml", "iris", "2.0.0", None) == Resolved(
        "iris-2", "2.0.0", original["spec"], original["status"]
    )


def test_without_a_marked_duplicate_the_first_name_holds() -> None:
    first, second = mv("iris-2a", "2.0.0"), mv("iris-2b", "2.0.0")

    assert holder([second, first]) is first


def test_a_holder_that_cannot_be_served_is_not_ready_although_the_duplicate_is_verified() -> None:
    # The registry marks the later object as the duplicate; the holder's own artifact decides.
    original = mv("iris-2", "2.0.0", [artifact("False", "ChecksumMismatch", "sha256 abc != def")])
    duplicate = mv("a-iris-2", "2.0.0", [VERIFIED, DUPLICATE])

    found = resolve([duplicate, original], "ml", "iris", "2.0.0", None)

    assert found == Unresolved(
        "VersionNotReady", "ModelVersion iris-2 (iris 2.0.0): ChecksumMismatch: sha256 abc != def"
    )


# --- resolve: a version waiting for the deployment's canary ----------------------------------------------------------


def awaiting(name: str, version: str, deployment: str = "fraud", at: str = "2026-01-01T00:00:00Z") -> Body:
    body = mv(name, version, [VERIFIED, {"type": "Ready", "status": "False", "reason": "AwaitingCanary"}])
    body["spec"]["liveCanary"] = {"deploymentRef": {"name": deployment}}
    body["status"]["requested"] = {"stage": "production", "at": at}
    return body


def test_a_deployment_following_production_with_the_canary_strategy_serves_the_version_waiting_for_it() -> None:
    production = mv("iris-1", "1.0.0", stage="production")
    versions = [production, awaiting("iris-2", "2.0.0"), awaiting("iris-3", "3.0.0", at="2026-01-02T00:00:00Z"),
                awaiting("iris-4", "4.0.0", deployment="other")]  # fmt: skip
    found = resolve(versions, "ml", "iris", None, "production", canary_of="fraud")
    assert isinstance(found, Resolved) and found.version == "3.0.0"
    # Without the canary strategy (canary_of None), or another deployment: production as always.
    for other in (None, "shadow"):
        found = resolve(versions, "ml", "iris", None, "production", canary_of=other)
        assert isinstance(found, Resolved) and found.version == "1.0.0"
