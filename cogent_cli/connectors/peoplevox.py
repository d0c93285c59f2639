"""Peoplevox: the SOAP 1.1 integration service (`integrationservicev4.asmx`), read with `GetReportData`.

`Authenticate(clientId, username, base64(password))` returns "clientId,sessionId"; every later call
carries it in a `UserSessionCredentials` header. A session is reused until it has idled for
`SESSION_IDLE_LIMIT`, and a call answered "invalid session" re-authenticates exactly once.
Reports come back as CSV in `Detail`, page by page (`PageNo`, `ItemsPerPage`, `TotalCount`).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

import httpx
from defusedxml import ElementTree

from cogent_cli.config import Config, PeoplevoxSettings
from cogent_cli.connectors.base import Page, Pass, RawRecord, RetryPolicy, SourceHTTP, SourceResponseError, content_key
from cogent_cli.credentials import Credentials
from cogent_cli.errors import CredentialError, UsageError

NAMESPACE = "http://www.peoplevox.net/"
SOAP_NAMESPACE = "http://schemas.xmlsoap.org/soap/envelope/"
# Sessions die after 30 minutes idle; renew a little before rather than fail a call.
SESSION_IDLE_LIMIT = 25 * 60


@dataclass(frozen=True)
class Report:
    stream: str
    kind: str
    template: str
    # Column filtered on for incremental passes; None for snapshots (read whole every run).
    date_column: str | None
    key_columns: tuple[str, ...]


def reports(settings: PeoplevoxSettings) -> dict[str, Report]:
    return {
        report.stream: report
        for report in (
            Report(
                "despatches",
                "despatch_summary",
                settings.despatch_report,
                "Despatch date",
                ("Despatch number", "Item code"),
            ),
            Report(
                "returns",
                "return_summary",
                settings.return_report,
                "Return date",
                ("Return code", "Item code"),
            ),
            Report("inventory", "inventory_summary", settings.inventory_report, None, ("Item code",)),
        )
    }


@dataclass(frozen=True)
class SoapResult:
    response_id: int
    total_count: int
    detail: str


def _text(parent: Element, name: str) -> str:
    found = parent.find(f"{{{NAMESPACE}}}{name}")
    return (found.text or "") if found is not None else ""


def envelope(body: str, session: tuple[str, str] | None = None) -> str:
    header = ""
    if session:
        client_id, session_id = session
        header = (
            f'<soap:Header><UserSessionCredentials xmlns="{NAMESPACE}"><UserId>0</UserId>'
            f"<ClientId>{escape(client_id)}</ClientId><SessionId>{escape(session_id)}</SessionId>"
            "</UserSessionCredentials></soap:Header>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP_NAMESPACE}">{header}<soap:Body>{body}</soap:Body></soap:Envelope>'
    )


def parse_result(xml: bytes, operation: str) -> SoapResult:
    """The `<operation>Result` of a SOAP response."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise SourceResponseError(
            f"peoplevox answered {operation} with XML that does not parse ({exc})",
            hint="Check base_url and client_id under [sources.peoplevox]: the URL must reach integrationservicev4.asmx.",
        ) from None
    result = root.find(f".//{{{NAMESPACE}}}{operation}Result")
    if result is None:
        fault = root.find(f".//{{{SOAP_NAMESPACE}}}Fault")
        reason = (fault.findtext("faultstring") or "").strip() if fault is not None else "no result element"
        raise SourceResponseError(
            f"peoplevox answered {operation} without a result: {reason}",
            hint="Check base_url and client_id under [sources.peoplevox]; rerun with -vv to see the request.",
        )
    try:
        response_id = int(_text(result, "ResponseId") or "0")
        total = int(_text(result, "TotalCount") or "0")
    except ValueError:
        raise SourceResponseError(
            f"peoplevox answered {operation} with a non-numeric ResponseId/TotalCount",
            hint="This is not a response shape cogent knows; report it with the -vv output.",
        ) from None
    return SoapResult(response_id, total, _text(result, "Detail"))


def _is_expired_session(detail: str) -> bool:
    lowered = detail.lower()
    return "session" in lowered and any(word in lowered for word in ("invalid", "expired", "timed out"))


def search_clause(column: str, since: datetime, timezone: str) -> str:
    """`[Despatch date] >= DateTime(2026,10,01,08,30,00)` in the site's local time."""
    local = since.astimezone(ZoneInfo(timezone))
    return f"[{column}] >= DateTime({local:%Y,%m,%d,%H,%M,%S})"


def rows_of(detail: str) -> list[dict[str, Any]]:
    """CSV rows as column -> value; cells beyond the header are kept under `_extra` for quarantine."""
    if not detail.strip():
        return []
    rows = []
    for row in csv.DictReader(io.StringIO(detail)):
        extra = row.pop(None, None)  # type: ignore[call-overload]
        if extra:
            row["_extra"] = extra
        rows.append(row)
    return rows


class PeoplevoxConnector:
    system = "peoplevox"

    def __init__(
        self,
        config: Config,
        *,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        settings = config.sources.peoplevox
        if settings is None or not settings.client_id or not settings.username:
            raise UsageError(
                "Peoplevox is not configured",
                hint="Add [sources.peoplevox] with client_id and username to cogent.toml, "
                "then `cogent auth set peoplevox`.",
            )
        self.settings = settings
        self.reports = reports(settings)
        self.streams = tuple(self.reports)
        self._password = Credentials(config).get("peoplevox", "password")
        self.http = SourceHTTP("peoplevox", settings.base_url, transport=transport, retry=retry)
        self.endpoint = f"/{settings.client_id}/resources/integrationservicev4.asmx"
        self._sleep = sleep
        self._clock = clock
        self._session: tuple[str, str] | None = None
        self._last_call = 0.0
        self.authentications = 0

    def close(self) -> None:
        self.http.close()

    def _post(self, operation: str, body: str, session: tuple[str, str] | None) -> SoapResult:
        response = self.http.request(
            "POST",
            self.endpoint,
            content=envelope(body, session).encode(),
            headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{NAMESPACE}{operation}"'},
        )
        if response.status_code in (401, 403):
            raise self.http.rejected(response, "request", "Check client_id under [sources.peoplevox].")
        if response.status_code != 500:  # SOAP 1.1 faults arrive as HTTP 500 with a Fault body
            self.http.expect_ok(response)
        return parse_result(response.content, operation)

    def authenticate(self) -> tuple[str, str]:
        password = base64.b64encode(self._password.encode()).decode()
        body = (
            f'<Authenticate xmlns="{NAMESPACE}"><clientId>{escape(self.settings.client_id)}</clientId>'
            f"<username>{escape(self.settings.username)}</username><password>{password}</password></Authenticate>"
        )
        result = self._post("Authenticate", body, None)
        self.authentications += 1
        client_id, _, session_id = result.detail.partition(",")
        if result.response_id != 0 or not session_id:
            raise CredentialError(
                f"Peoplevox refused to authenticate {self.settings.username!r} for client {self.settings.client_id!r}: "
                f"{result.detail or 'no session returned'}",
                hint="Check client_id and username under [sources.peoplevox], then store the password again with "
                "`cogent auth set peoplevox` (or set COGENT_PEOPLEVOX_PASSWORD).",
            )
        self._session = (client_id, session_id)
        return self._session

    def call(self, operation: str, body: str) -> SoapResult:
        """Call with the current session, renewing it once if Peoplevox says it has expired."""
        idle = self._clock() - self._last_call
        if self._session is None or idle > SESSION_IDLE_LIMIT:
            self.authenticate()
        assert self._session is not None
        result = self._post(operation, body, self._session)
        if result.response_id == -1 and _is_expired_session(result.detail):
            result = self._post(operation, body, self.authenticate())
            if result.response_id == -1 and _is_expired_session(result.detail):
                raise CredentialError(
                    f"Peoplevox rejected a newly issued session for {operation}: {result.detail}",
                    hint="The API user may lack permission for the integration service; check it in Peoplevox.",
                )
        self._last_call = self._clock()
        if result.response_id == -1:
            raise SourceResponseError(
                f"Peoplevox {operation} failed: {result.detail}",
                hint="Check the report names (despatch_report, return_report, inventory_report) under "
                "[sources.peoplevox].",
            )
        return result

    def report_page(self, template: str, page: int, clause: str = "", order_by: str = "") -> SoapResult:
        body = (
            f'<GetReportData xmlns="{NAMESPACE}"><getReportRequest>'
            f"<TemplateName>{escape(template)}</TemplateName><PageNo>{page}</PageNo>"
            f"<ItemsPerPage>{self.settings.items_per_page}</ItemsPerPage>"
            f"<SearchClause>{escape(clause)}</SearchClause><FilterClause></FilterClause>"
            f"<OrderBy>{escape(order_by)}</OrderBy><Columns></Columns>"
            "</getReportRequest></GetReportData>"
        )
        return self.call("GetReportData", body)

    def record(self, report: Report, row: dict[str, Any], sweep: Pass) -> RawRecord:
        natural = [str(row.get(column) or "") for column in report.key_columns]
        if report.date_column is None:
            natural = [sweep.snapshot_id, *natural, str(row.get("Site reference") or "")]
        return RawRecord(report.kind, content_key(report.kind, *natural, body=row), json.dumps(row))

    def pages(self, stream: str, cursor: Mapping[str, Any] | None, since: datetime | None) -> Iterator[Page]:
        report = self.reports[stream]
        sweep = Pass.begin(cursor, since)
        clause = ""
        if report.date_column and sweep.since is not None:
            clause = search_clause(report.date_column, sweep.since, self.settings.timezone)
        order_by = f"[{report.date_column}]" if report.date_column else "[Item code]"
        page = first = int(sweep.position or 0)
        read = page * self.settings.items_per_page
        while True:
            if page > first:
                self._sleep(self.settings.page_delay_seconds)
            page += 1
            result = self.report_page(report.template, page, clause, order_by)
            rows = rows_of(result.detail)
            read += len(rows)
            done = not rows or read >= result.total_count
            records = [self.record(report, row, sweep) for row in rows]
            yield Page(stream, records, sweep.finished() if done else sweep.at(page), total=result.total_count)
            if done:
                return
