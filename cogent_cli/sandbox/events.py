"""Events and metrics: create (202, silently deduplicated), bulk create, read back, metric auto-creation."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from cogent_cli.sandbox.calls import Call, handles, paginate
from cogent_cli.sandbox.filters import COMPARATORS, sql_value
from cogent_cli.sandbox.jsonapi import ApiError, invalid, json_response, not_found, now
from cogent_cli.sandbox.resources import event_resource, metric_resource, profile_resource
from cogent_cli.sandbox.schema import event_number
from cogent_cli.sandbox.store import EventChecks, scope_identifiers

MAX_BULK_EVENTS = 1000
METRICS_PAGE = 200


@handles("create_event")
def create_event(call: Call) -> Response:
    attributes = call.data()["attributes"]
    try:
        event = EventChecks(now()).check(attributes)
    except ApiError as error:
        raise error.under("/data/attributes") from None
    profile, _ = call.store.resolve_profile(
        attributes["profile"]["data"],
        "/data/attributes/profile/data",
        meta=attributes["profile"]["data"].get("attributes", {}).get("meta"),
    )
    call.store.record_events([(profile["id"], event)])
    return Response(status_code=202)


@handles("bulk_create_events")
def bulk_create_events(call: Call) -> Response:
    entries = call.data()["attributes"]["events-bulk-create"]["data"]
    base = "/data/attributes/events-bulk-create/data"
    attributes = [entry["attributes"] for entry in entries]
    event_lists = [entry_attributes["events"]["data"] for entry_attributes in attributes]
    total = sum(map(len, event_lists))
    if total > MAX_BULK_EVENTS:
        raise invalid(f"A bulk request may hold at most {MAX_BULK_EVENTS} events, not {total}.", pointer=base)
    store = call.store
    references = [entry_attributes["profile"]["data"] for entry_attributes in attributes]
    # Who is who, for every profile the request names, in one lookup (taken before anything is written).
    identities = [scope_identifiers(data) for data in references]
    index = store.identity_index(identities)
    checks = EventChecks(now())
    # Everything is checked before anything is written: one bad event fails the whole request.
    # A unique_id may repeat for another profile; which profile an event is for is only worked out
    # when its metric and unique_id have been seen before in the request (rarely).
    first_of: dict[tuple[str, str], tuple[int, int]] = {}
    scoped: dict[tuple[str, str, str], tuple[int, int]] = {}

    def scope(i: int) -> str:
        return store.dedupe_scope(references[i], identities[i], index)

    checked = []
    for i, events in enumerate(event_lists):
        for j, event in enumerate(events):
            try:
                checked_event = checks.check(event["attributes"])
            except ApiError as error:
                raise error.under(f"{base}/{i}/attributes/events/data/{j}/attributes") from None
            unique_id = checked_event.unique_id
            if unique_id is not None:
                key = (checked_event.metric, unique_id)
                position = (i, j)
                first = first_of.setdefault(key, position)
                if first is not position:  # seen earlier in the request
                    scoped.setdefault((scope(first[0]), *key), first)
                    prior = scoped.setdefault((scope(i), *key), position)
                    if prior is not position:
                        raise invalid(
                            f"unique_id '{unique_id}' is repeated for the same profile and metric (first at "
                            f"{base}/{prior[0]}/attributes/events/data/{prior[1]}/attributes/unique_id); "
                            "the request failed and no events were processed.",
                            pointer=f"{base}/{i}/attributes/events/data/{j}/attributes/unique_id",
                        )
            checked.append((i, checked_event))
    profiles = store.resolve_event_profiles(
        references, lambda i: f"{base}/{i}/attributes/profile/data", identities, index
    )
    store.record_events([(profiles[i], checked_event) for i, checked_event in checked])
    return Response(status_code=202)


def _event_conditions(call: Call) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for condition in call.filters():
        if condition.field in ("metric_id", "profile_id"):
            where.append(f"{condition.field} = ?")
            params.append(condition.value)
        elif condition.field in ("datetime", "timestamp"):
            value = sql_value(condition.value)
            if condition.field == "timestamp" and isinstance(value, int | float):
                where.append(f"timestamp {COMPARATORS[condition.operator]} ?")
            else:
                where.append(f"time {COMPARATORS[condition.operator]} ?")
            params.append(value)
        elif condition.field in ("metric", "profile"):
            where.append(f"{condition.field}_id is not null")
    return where, params


def _included(call: Call, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    include = call.query.get("include", [])
    found: list[dict[str, Any]] = []
    if "metric" in include:
        for metric_id in dict.fromkeys(event["metric_id"] for event in events):
            metric = call.store.one("select * from metrics where id = ?", [metric_id])
            if metric:
                found.append(metric_resource(call.base_url, metric))
    if "profile" in include:
        for profile_id in dict.fromkeys(event["profile_id"] for event in events):
            profile = call.store.profile(profile_id)
            if profile:
                found.append(profile_resource(call.store, call.base_url, profile))
    return found


@handles("get_events")
def get_events(call: Call) -> Response:
    where, params = _event_conditions(call)
    rows, links = paginate(
        call,
        "events",
        where,
        params,
        default_sort="datetime",
        size=call.query["page[size]"],
        columns={"datetime": "time", "timestamp": "time"},
    )
    body: dict[str, Any] = {"data": [event_resource(call.base_url, row) for row in rows], "links": links}
    if call.query.get("include"):
        body["included"] = _included(call, rows)
    return json_response(body)


@handles("get_event")
def get_event(call: Call) -> Response:
    number = event_number(call.path_params["id"])
    event = None if number is None else call.store.one("select * from events where id = ?", [number])
    if event is None:
        raise not_found(f"An event with id '{call.path_params['id']}' does not exist.")
    body: dict[str, Any] = {"data": event_resource(call.base_url, event), "links": {"self": str(call.url)}}
    if call.query.get("include"):
        body["included"] = _included(call, [event])
    return json_response(body)


@handles("get_metrics")
def get_metrics(call: Call) -> Response:
    for condition in call.filters():
        # Every sandbox metric comes from the API integration.
        if str(condition.value).lower() not in ("api",):
            return json_response({"data": [], "links": {"self": str(call.url)}})
    rows, links = paginate(call, "metrics", [], [], default_sort="created", size=METRICS_PAGE)
    return json_response({"data": [metric_resource(call.base_url, row) for row in rows], "links": links})


@handles("get_metric")
def get_metric(call: Call) -> Response:
    metric = call.store.one("select * from metrics where id = ?", [call.path_params["id"]])
    if metric is None:
        raise ApiError.one(404, f"A metric with id '{call.path_params['id']}' does not exist.")
    return json_response({"data": metric_resource(call.base_url, metric), "links": {"self": str(call.url)}})
