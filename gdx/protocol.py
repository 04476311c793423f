"""The wire protocol between front-end nodes and the central exchange.

One module, imported by both sides: the exchange serves these models and the agent
sends and parses them, so a field cannot drift between the two.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StrictInt, StrictStr, model_validator

from gdx.fields import FieldType, KeyKind, RowSchema

# Limits that a client can rely on; the exchange refuses anything beyond them with 413/422.
MAX_BATCH_CHANGES = 5000
MAX_PAGE_CHANGES = 5000
MAX_FIELDS = 200
# An uploaded file's default limits (the exchange's settings may lower or raise them): its size, and
# its rows in CSV and in a workbook (unpacked whole to be read).
UPLOAD_MAX_BYTES = 512 * 1024 * 1024
UPLOAD_MAX_ROWS = 2_000_000
UPLOAD_MAX_WORKBOOK_ROWS = 200_000
# Sequence numbers and ids are PostgreSQL's bigint: a cursor beyond it is refused (422).
MAX_SEQ = 2**63 - 1

CODE_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,63}$"
FIELD_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"
DEPARTMENT_PATTERN = r"^[a-z0-9][a-z0-9-]{1,39}$"

ResourceCode = Annotated[str, Field(pattern=CODE_PATTERN, description="Catalog code, e.g. zjg-gaj.population")]
FieldName = Annotated[str, Field(pattern=FIELD_PATTERN)]
DepartmentId = Annotated[str, Field(pattern=DEPARTMENT_PATTERN)]
Text = Annotated[str, Field(min_length=1, max_length=2000)]
Purpose = Annotated[str, Field(min_length=2, max_length=500, description="What the data is used for (ZJG Art. 21)")]
Key = StrictStr | StrictInt
# A file of a resource of format `file` is named by its content: the SHA-256 of its bytes, in hex.
SHA256_PATTERN = r"^[0-9a-f]{64}$"
MEDIA_TYPE_PATTERN = r"^[a-z]+/[a-z0-9][a-z0-9.+-]{0,126}$"
MediaType = Annotated[str, Field(pattern=MEDIA_TYPE_PATTERN, description="e.g. application/pdf, image/jpeg")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShareType(StrEnum):
    UNCONDITIONAL = "unconditional"  # 无条件共享
    CONDITIONAL = "conditional"  # 有条件共享
    NOT_SHARED = "not_shared"  # 不予共享


class ShareMethod(StrEnum):
    FRONT_END = "front_end"  # 前置交换
    API = "api"  # 接口 (online lookup)
    DOWNLOAD = "download"  # 批量下载
    FILE = "file"  # 文件上传 / 模板导入


class UpdatePeriod(StrEnum):
    REALTIME = "realtime"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    YEARLY = "yearly"

    def max_age(self) -> dt.timedelta:
        """How long a resource may go without a data change before it counts as not updated
        within its declared period (a day of grace on top; a realtime resource gets a day)."""
        days = {"realtime": 1, "daily": 2, "weekly": 8, "monthly": 32, "quarterly": 93, "yearly": 367}
        return dt.timedelta(days=days[self.value])


# The whole catalog is reviewed at least yearly (ZJG Art. 12; Ningxia Art. 8; Wushen Art. 7).
CATALOG_REVIEW_PERIOD = dt.timedelta(days=365)


class DataFormat(StrEnum):
    TABLE = "table"
    FILE = "file"
    API = "api"


class FieldSpec(_Model):
    name: FieldName
    type: FieldType
    nullable: bool = True
    description: str = Field(default="", max_length=500)


class ResourceSpec(_Model):
    """A catalog entry (资源目录条目) as the providing department registers it."""

    code: ResourceCode
    name: Text
    classification: Text = Field(description="Catalog classification, e.g. 基础信息资源/人口信息")
    format: DataFormat = DataFormat.TABLE
    fields: list[FieldSpec] = Field(min_length=1, max_length=MAX_FIELDS)
    primary_key: FieldName
    key_kind: KeyKind = KeyKind.PLAIN
    share_type: ShareType
    share_conditions: str = Field(default="", max_length=2000)
    share_methods: list[ShareMethod] = Field(min_length=1)
    update_period: UpdatePeriod
    usage_requirements: str = Field(default="", max_length=2000)
    release_date: dt.date
    legal_basis: str | None = Field(
        default=None, max_length=2000, description="Required for not_shared: the law or policy behind it"
    )
    file_field: FieldName | None = Field(
        default=None,
        description="Format file only: the string field that holds each record's file, as the SHA-256 of its bytes",
    )
    file_types: list[MediaType] = Field(
        default_factory=list,
        max_length=50,
        description="Format file only: the media types its files may be, told by their bytes "
        "(application/octet-stream admits any)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ResourceSpec:
        names = [f.name for f in self.fields]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate field name(s): {', '.join(duplicates)}")
        by_name = {f.name: f for f in self.fields}
        key = by_name.get(self.primary_key)
        if key is None:
            raise ValueError(f"primary_key {self.primary_key!r} is not one of the fields")
        if key.nullable:
            raise ValueError(f"primary key field {self.primary_key!r} must have nullable: false")
        if self.key_kind is not KeyKind.PLAIN and key.type is not FieldType.STRING:
            raise ValueError(f"key_kind {self.key_kind.value} needs a primary key of type string")
        if key.type not in (FieldType.STRING, FieldType.INTEGER):
            raise ValueError("the primary key must be of type string or integer")
        if self.share_type is ShareType.NOT_SHARED and not (self.legal_basis or "").strip():
            raise ValueError("a not_shared resource needs its legal_basis (the law or policy that forbids sharing)")
        if self.share_type is ShareType.CONDITIONAL and not self.share_conditions.strip():
            raise ValueError("a conditional resource needs share_conditions (who may use it, for what)")
        if len(set(self.share_methods)) != len(self.share_methods):
            raise ValueError("share_methods lists a method twice")
        self._check_files(by_name)
        return self

    def _check_files(self, by_name: dict[str, FieldSpec]) -> None:
        if self.format is not DataFormat.FILE:
            if self.file_field is not None or self.file_types:
                raise ValueError("file_field and file_types are for a resource of format file")
            return
        if self.file_field is None or not self.file_types:
            raise ValueError("a resource of format file needs file_field (the field naming each record's file) "
                             "and file_types (the media types its files may be)")  # fmt: skip
        field = by_name.get(self.file_field)
        if field is None:
            raise ValueError(f"file_field {self.file_field!r} is not one of the fields")
        if field.type is not FieldType.STRING or self.file_field == self.primary_key:
            raise ValueError(f"file_field {self.file_field!r} must be a string field other than the primary key")

    def row_schema(self) -> RowSchema:
        return RowSchema(
            {f.name: (f.type, f.nullable) for f in self.fields},
            primary_key=self.primary_key,
            key_kind=self.key_kind,
            file_field=self.file_field,
        )


class Resource(ResourceSpec):
    provider: DepartmentId
    schema_version: int
    created_at: dt.datetime
    catalog_updated_at: dt.datetime


def _object_or_none(value: Any) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise ValueError("a row must be a JSON object")


# A row is checked against its resource's schema by RowSchema; here only its shape. Validated
# as dict[str, Any], pydantic copied every row of a batch: 3.5 ms of 7 per 1,000 changes.
Row = Annotated[Any, PlainValidator(_object_or_none, json_schema_input_type=dict[str, Any] | None)]


class Change(_Model):
    op: Literal["upsert", "delete"]
    key: Key
    row: Row = Field(default=None, description="The whole row for upsert; absent for delete")
    source_version: StrictInt = Field(ge=0, description="Monotonic per key at the source; stale ones are ignored")
    source_commit_time: dt.datetime

    @model_validator(mode="after")
    def _row_matches_op(self) -> Change:
        if self.op == "upsert" and self.row is None:
            raise ValueError("an upsert needs its row")
        if self.op == "delete" and self.row is not None:
            raise ValueError("a delete carries no row")
        if self.source_commit_time.tzinfo is None:
            raise ValueError("source_commit_time needs a UTC offset")
        return self


class Heartbeat(_Model):
    """A heartbeat row travelling the data path (the pt-heartbeat technique): wherever it is
    seen, now - source_time is the lag up to that point, and a seq that stops advancing
    means the path is stalled, not idle."""

    seq: StrictInt = Field(ge=0, description="The publishing node's heartbeat counter for this resource")
    source_time: dt.datetime = Field(description="When the heartbeat was written at the source")

    @model_validator(mode="after")
    def _aware(self) -> Heartbeat:
        if self.source_time.tzinfo is None:
            raise ValueError("source_time needs a UTC offset")
        return self


class ChangeBatch(_Model):
    batch_id: uuid.UUID = Field(description="Chosen by the sender; a repeated id changes nothing")
    changes: list[Change] = Field(default_factory=list, max_length=MAX_BATCH_CHANGES)
    heartbeat: Heartbeat | None = Field(
        default=None, description="Appended to the change log after the batch's changes; idle nodes send it alone"
    )

    @model_validator(mode="after")
    def _not_empty(self) -> ChangeBatch:
        if not self.changes and self.heartbeat is None:
            raise ValueError("a batch needs changes, a heartbeat, or both")
        return self


class BatchReceipt(_Model):
    batch_id: uuid.UUID
    resource: str
    received: int
    applied: int = Field(description="Changes that got a sequence number")
    stale: int = Field(description="Changes whose source_version was not newer than the exchange's")
    first_seq: int | None
    last_seq: int | None
    duplicate: bool = Field(description="True when this batch id had been applied before")


class ChangeOut(_Model):
    seq: int
    op: Literal["upsert", "delete", "heartbeat"]
    key: Key | None = Field(description="None for a heartbeat")
    row: dict[str, Any] | None
    source_version: int
    source_commit_time: dt.datetime
    heartbeat: Heartbeat | None = None


class ChangePage(_Model):
    resource: str
    changes: list[ChangeOut]
    next_after: int = Field(description="Pass as `after` to read on")
    has_more: bool


class Record(_Model):
    resource: str
    key: Key
    row: dict[str, Any]
    seq: int
    source_version: int


class Subscribe(_Model):
    purpose: Purpose


Column = Annotated[str, Field(min_length=1, max_length=128)]  # a column as the source database names it


class Drift(_Model):
    """How a provider's published table differs from its catalog entry, as its node found it."""

    schema_version: int = Field(ge=1, description="The catalog version the node compared against")
    missing: list[FieldName] = Field(
        default_factory=list, max_length=1000, description="Fields of the entry the table lacks"
    )
    added: list[Column] = Field(
        default_factory=list, max_length=1000, description="Columns the table gained since that version"
    )
    dropped: list[Column] = Field(
        default_factory=list, max_length=1000, description="Columns the table lost since that version"
    )
    retyped: list[Column] = Field(
        default_factory=list, max_length=1000, description="Columns whose type changed since that version"
    )

    def empty(self) -> bool:
        return not (self.missing or self.added or self.dropped or self.retyped)


class CatalogCause(StrEnum):
    DRIFT = "drift"  # the provider's table no longer matches its entry
    DUTIES = "duties"  # the department's duties changed (Ningxia Art. 8, Wushen Art. 7)
    LAW = "law"  # a law or regulation changed (Ningxia Art. 8)


class CatalogItemIn(_Model):
    department: DepartmentId
    cause: Literal["duties", "law"]
    detail: Text


class CatalogItem(_Model):
    id: int
    department: str
    resource: str | None
    cause: CatalogCause
    detail: dict[str, Any]
    opened_at: dt.datetime
    opened_by: str
    due_date: dt.date | None = Field(description="The catalog must follow by then; none where no rule sets a deadline")
    due_date_estimated: bool
    closed_at: dt.datetime | None
    closed_by: str | None
    closed_reason: str | None
    overdue: bool = False


class InboxKind(StrEnum):
    REPLY = "reply"  # a request to answer (the provider)
    NEGOTIATION = "negotiation"  # a not-shared resource asked for (both parties)
    EXPLANATION = "explanation"  # an escalated request to explain to the authority (the provider)
    DECISION = "decision"  # an escalated request to decide (the coordinating authority)
    DISPUTE = "dispute"  # doubtful data to check (the provider)
    CATALOG = "catalog"  # a catalog-update item (the department)
    GRANT_EXPIRING = "grant_expiring"  # a grant held that ends within 30 days (the consumer)


class InboxItem(_Model):
    key: str = Field(description="Stable across reads, e.g. request:42:reply")
    kind: InboxKind
    id: int = Field(description="The record's id: request, dispute, catalog item or grant")
    resource: str | None
    counterpart: str | None = Field(description="The other department, if any")
    about: str | None = Field(description="The purpose, reason or cause")
    deadline: dt.date | None
    overdue: bool
    action: str = Field(description="What to do, as the API call that does it")


class InboxNotice(_Model):
    item: str
    created_at: dt.datetime
    attempts: int
    next_attempt_at: dt.datetime
    delivered_at: dt.datetime | None
    last_error: str | None


class Review(_Model):
    note: Text | None = Field(default=None, description="What was checked, for the audit trail")


class ShareRequestIn(_Model):
    resource: ResourceCode
    purpose: Purpose
    fields: list[FieldName] | None = Field(default=None, description="Fields asked for; none means all")


class RequestStatus(StrEnum):
    PENDING = "pending"
    NEGOTIATING = "negotiating"  # 协商: a not-shared resource asked for; the parties talk first
    APPROVED = "approved"
    REFUSED = "refused"
    ESCALATED = "escalated"  # 提请协调: sent to the competent authority
    DECIDED = "decided"  # the competent authority recorded its decision, which is final


class RequestKind(StrEnum):
    ACCESS = "access"  # a grant on a conditional resource
    AMENDMENT = "amendment"  # more fields for a grant held
    EXCEPTION = "exception"  # a not-shared resource, by negotiation


class Overdue(StrEnum):
    """Whose deadline passed, and which one."""

    REPLY = "reply"  # the provider's answer to a request (working days)
    NEGOTIATION = "negotiation"  # the parties' negotiation window (working days)
    EXPLANATION = "explanation"  # the provider's written explanation to the authority (days)
    DECISION = "decision"  # the authority's decision (days from the explanation, or the escalation)


class ShareRequest(_Model):
    id: int
    resource: str
    consumer: str
    provider: str
    purpose: str
    fields: list[str] | None
    status: RequestStatus
    requested_at: dt.datetime
    due_date: dt.date | None = Field(description="The provider's reply deadline; none where no rule sets one")
    due_date_estimated: bool = Field(
        description="True when the calendar did not know every day up to the due date (weekends only)"
    )
    replied_at: dt.datetime | None
    reply_reason: str | None
    approved_fields: list[str] | None
    escalation_reason: str | None
    decision: str | None
    decision_reason: str | None
    decided_by: str | None
    kind: RequestKind = RequestKind.ACCESS
    grant_id: int | None = Field(default=None, description="The grant an amendment widens")
    legal_basis: str | None = Field(default=None, description="An exception's basis, stated by who granted it")
    negotiation_due: dt.date | None = Field(default=None, description="End of the negotiation window, if any")
    escalated_by: str | None = None
    explanation: str | None = Field(default=None, description="The provider's written explanation to the authority")
    explanation_due: dt.date | None = None
    decision_due: dt.date | None = None
    overdue: Overdue | None = Field(default=None, description="The deadline that has passed, as of today")


class OnRevoke(StrEnum):
    """What the subscriber's node does with the rows it holds when the grant ends."""

    KEEP = "keep"  # the table stays as it was, frozen: no more changes arrive
    PURGE = "purge"  # the node empties the table


class GrantTerms(_Model):
    expires_on: dt.date | None = Field(default=None, description="Last day of the grant; none: until revoked")
    on_revoke: OnRevoke = Field(default=OnRevoke.KEEP, description="The subscriber's rows when the grant ends")


class Approve(GrantTerms):
    fields: list[FieldName] | None = Field(default=None, description="Limit the grant to these fields")
    legal_basis: Text | None = Field(default=None, description="Required to grant a not-shared resource")


class Refuse(_Model):
    reason: Text


class Escalate(_Model):
    reason: Text


class Decision(GrantTerms):
    outcome: Literal["approve", "refuse"]
    reason: Text
    fields: list[FieldName] | None = None


class Explanation(_Model):
    text: Text


class Amend(_Model):
    fields: list[FieldName] = Field(min_length=1, description="The fields the grant should cover, old and new")
    reason: Text


class Revoke(_Model):
    reason: Text
    on_revoke: OnRevoke | None = Field(default=None, description="Overrides the grant's setting")


class Restore(_Model):
    reason: Text


class GrantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"  # the resource became conditional: until a request is approved
    REVOKED = "revoked"
    EXPIRED = "expired"


class Grant(_Model):
    id: int
    resource: str
    consumer: str
    purpose: str
    fields: list[str] | None = Field(description="Granted fields; none means all")
    request_id: int | None
    granted_at: dt.datetime
    status: GrantStatus = GrantStatus.ACTIVE
    expires_on: dt.date | None = None
    on_revoke: OnRevoke = OnRevoke.KEEP
    ended_at: dt.datetime | None = Field(default=None, description="When it was revoked or suspended")
    ended_by: str | None = None
    end_reason: str | None = None

    def ended_because(self) -> str | None:
        """Why the grant no longer lets its holder read, None while it does (the exchange's
        refusal and the subscriber's node say it in the same words)."""
        if self.status is GrantStatus.ACTIVE:
            return None
        if self.status is GrantStatus.EXPIRED:
            return f"grant {self.id} on {self.resource!r} expired on {self.expires_on}"
        when = self.ended_at.date() if self.ended_at else "?"
        who = f"by {self.ended_by}: {self.end_reason}"
        return f"grant {self.id} on {self.resource!r} was {self.status.value} on {when} {who}"


class DisputeIn(_Model):
    resource: ResourceCode
    key: Key
    reason: Text


class Resolve(_Model):
    resolution: Text


class Dispute(_Model):
    id: int
    resource: str
    key: Key
    consumer: str
    provider: str
    reason: str
    status: Literal["open", "resolved"]
    opened_at: dt.datetime
    resolution: str | None
    resolved_at: dt.datetime | None


class Department(_Model):
    id: str
    name: str
    jurisdiction: str


class AuditEntry(_Model):
    id: int
    at: dt.datetime
    actor: str
    role: str
    action: str
    resource: str | None
    purpose: str | None
    scope: dict[str, Any]
    outcome: str
    hash: str


class CentralHeartbeat(_Model):
    seq: int
    source_time: dt.datetime
    received_at: dt.datetime


class ResourceStatus(_Model):
    """One catalog entry as the monitoring agent sees it: the central hop's newest heartbeat
    and the governance deadlines."""

    code: str
    provider: str
    update_period: UpdatePeriod
    last_seq: int
    last_change_at: dt.datetime | None
    catalog_updated_at: dt.datetime
    heartbeat: CentralHeartbeat | None
    not_updated: bool = Field(description="No data change within the declared update period")
    catalog_review_overdue: bool = Field(description="Catalog entry not reviewed within a year")
    subscribers: list[DepartmentId] = Field(description="Departments holding a grant")


class DepartmentGovernance(_Model):
    department: DepartmentId
    overdue_requests: int = Field(description="Share requests to it, unanswered after their reply deadline")
    catalog_review_overdue: int
    not_updated_resources: int
    open_disputes: int = Field(description="Disputes about its resources still open")
    overdue: dict[str, int] = Field(
        default_factory=dict, description="Its requests past a deadline, by deadline (reply, negotiation, ...)"
    )
    grants_expiring: int = Field(default=0, description="Grants it holds that expire within 30 days")
    catalog_updates_overdue: int = Field(default=0, description="Catalog-update items past their deadline")
    inbox: int = Field(default=0, description="Items waiting for the department (GET /v1/inbox)")
    webhook_failing: int = Field(default=0, description="Inbox notices its webhook has not taken after retries")


class MonitoringSummary(_Model):
    as_of: dt.datetime
    resources: list[ResourceStatus]
    departments: list[DepartmentGovernance]


class UploadMode(StrEnum):
    CHANGES = "changes"  # upserts, and deletions marked in the _delete column
    REPLACE = "replace"  # the file is the whole resource: keys it leaves out are deleted


class UploadCounts(_Model):
    rows: int = Field(description="Data rows in the file (notes and blank rows not counted)")
    upserted: int = Field(description="Rows new or different from what the exchange held: each a change")
    unchanged: int = Field(description="Rows equal to what the exchange held: no change logged")
    deleted: int = Field(description="Keys deleted: marked in the file, or (replace) left out of it")
    absent: int = Field(description="Deletions of keys the exchange did not hold")
    notes: int = Field(description="Note rows skipped: first cell beginning with #, right below the header")
    blank: int = Field(description="Empty rows skipped")


class Upload(_Model):
    """A file uploaded to a resource (模板导入 / 文件上传), applied whole or refused whole."""

    id: int
    resource: str
    department: str
    mode: UploadMode
    format: Literal["csv", "xlsx", "xls", "ods"]
    encoding: str | None = Field(description="The text encoding found in a CSV file (utf-8 or gb18030)")
    timezone: str = Field(description="The zone of timestamps written without a UTC offset")
    sha256: str
    bytes: int
    outcome: Literal["applied", "refused"]
    counts: UploadCounts | None
    first_seq: int | None
    last_seq: int | None
    problems: int = Field(description="Bad cells found (the report lists up to 1,000)")
    reason: str | None = Field(description="Why the file was refused")
    received_at: dt.datetime


class StoredFile(_Model):
    """A file of a resource of format `file` (an attachment), as the exchange holds it."""

    resource: str
    sha256: str = Field(description="The SHA-256 of its bytes: the value its record's file_field holds")
    bytes: int
    media_type: str = Field(description="Told by its bytes, one of the resource's file_types")
    uploaded_by: str
    uploaded_at: dt.datetime
    new: bool = Field(description="False when the resource already held these bytes (an upload again changes nothing)")


class Load(_Model):
    """A provider's full load at the exchange (gdx node sync --full): its rows arrive as pushes."""

    id: uuid.UUID
    resource: str
    department: str
    started_at: dt.datetime
    progressed_at: dt.datetime
    finished_at: dt.datetime | None
    rows: int = Field(description="Rows the provider sent so far")
    position: int | None = Field(description="The resource's last sequence number when the load finished")


class LoadProgress(_Model):
    rows: StrictInt = Field(ge=0, description="Rows sent so far")
    finished: bool = False
