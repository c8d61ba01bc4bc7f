"""The words a run records, one StrEnum each: a record's or step's `Status`, a billed reply's
`Outcome` (the cost record's), a run's `RunStatus`, a failure's `FailureKind`. Members equal their strings ("ok" ==
Status.OK), so the database, the output lines and JSON hold the plain words.

May import: nothing of ours (the lowest layer, with errors).
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """A record's or a step's result."""

    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"  # a step whose `when` was false; a record whose every step was skipped


class Outcome(StrEnum):
    """What a billed reply turned out to be, as `cost_records.outcome` holds it."""

    OK = "ok"
    INVALID_JSON = "invalid_json"
    SCHEMA_MISMATCH = "schema_mismatch"
    CONTENT_FILTER = "content_filter"
    LENGTH = "length"
    ERROR = "error"


class RunStatus(StrEnum):
    """A run's status in the runs table."""

    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"  # finished, some records failed
    STOPPED = "stopped"  # a budget or configuration stop
    INTERRUPTED = "interrupted"  # Ctrl-C, or its process is gone


class FailureKind(StrEnum):
    """Why a record or step failed, as `FailureSummary.kind` and the output line's `error.kind` say it."""

    INVALID_INPUT = "invalid_input"  # the record does not match the pipeline's `input`
    RENDER_ERROR = "render_error"  # a template failed at run time (a `for_each` that gives no list, too)
    TOO_MANY_ITEMS = "too_many_items"  # a `for_each` list longer than the step's max_items
    CODE_ERROR = "code_error"  # a code step's function raised, timed out or returned a value that is not JSON
    ATTACHMENT_ERROR = "attachment_error"  # an attachment cannot be sent: outside the files root, missing, unknown type
    ERROR = "error"  # a model call failed in another way
    UNAVAILABLE = "unavailable"  # 429/408/5xx/timeouts, retries spent
    NO_ENDPOINTS = "no_endpoints"  # 404: no provider can serve the parameters
    REJECTED = "rejected"  # 400, or 403 moderation
    INVALID_JSON = "invalid_json"  # the last reply's Outcome, re-asks spent
    SCHEMA_MISMATCH = "schema_mismatch"
    CONTENT_FILTER = "content_filter"
    LENGTH = "length"
    TOOL_ROUNDS_EXHAUSTED = "tool_rounds_exhausted"  # the model still called tools at max_tool_rounds
