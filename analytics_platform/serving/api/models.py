"""The API's request and response shapes: the OpenAPI schema is the contract with its clients."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import Enum, StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

ACTIVITY_TYPES = ("user_visit", "add_to_cart", "checkout", "purchase")
ActivityType = StrEnum("ActivityType", {name: name for name in ACTIVITY_TYPES})  # type: ignore[misc]


class Filters(BaseModel):
    """A metric's filters (each metric offers some of them: see /v1/metrics)."""

    model_config = ConfigDict(extra="forbid")

    start: datetime | None = Field(None, description="Rows at or after this time (ISO 8601; UTC if no offset).")
    end: datetime | None = Field(None, description="Rows before this time (exclusive).")
    event_type: ActivityType | None = Field(None, description="One activity event type.")
    category: str | None = Field(None, min_length=1, max_length=100, description="One product category.")
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 country code.")
    cohort: date | None = Field(None, description="A signup cohort: the Monday of its signup week.")

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    def given(self) -> dict[str, Any]:
        """The filters set, as query parameters (enums as their values)."""
        return {name: value.value if isinstance(value, Enum) else value for name, value in self if value is not None}


class RawSnapshot(BaseModel):
    snapshot_id: int = Field(description="The raw table's Iceberg snapshot the answer reflects (0: none yet).")
    newest_event_at: datetime | None = Field(description="Newest event time in that snapshot.")


class AsOf(BaseModel):
    build: str = Field(description="The published marts build the answer was read from.")
    published_at: datetime
    raw: dict[str, RawSnapshot] = Field(description="Per raw table, what the answer reflects.")


class MetricInfo(BaseModel):
    name: str
    description: str
    key: list[str] = Field(description="The metric's grain, and the order rows are paged in.")
    filters: list[str]
    split_by_country: bool = Field(description="Whether keys limited to some countries may read it.")
    live: bool = Field(description="Refreshed every few seconds by the live follower (else by full builds).")


class MetricList(BaseModel):
    metrics: list[MetricInfo]


class MetricPage(BaseModel):
    metric: str
    rows: list[dict[str, Any]] = Field(description="Rows in key order; columns as in the mart.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")
    as_of: AsOf


class Problem(BaseModel):
    detail: str = Field(description="What went wrong and what to do.")
