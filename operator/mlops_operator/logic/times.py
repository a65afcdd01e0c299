"""Times as the API server writes them (RFC 3339, seconds, UTC) and back."""

from __future__ import annotations

from datetime import UTC, datetime


def stamp(when: datetime) -> str:
    """``when`` as the API server writes times: ``2026-01-31T12:00:00Z``."""
    return when.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def now_rfc3339() -> str:
    """The current time, stamped."""
    return stamp(datetime.now(UTC))


def parse_time(value: str | datetime | None, default: datetime | None = None) -> datetime:
    """An RFC 3339 timestamp as an aware datetime (``default``, else the epoch, when there is none)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return default or datetime.fromtimestamp(0, UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
