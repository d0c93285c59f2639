"""Typed inputs and outputs of the Klaviyo client.

Inputs (`*In`, `VariantInventory`, ...) validate what Klaviyo would reject before a request is
spent on it and render the JSON:API bodies of revision 2026-07-15. For profiles, a field set to
None clears it in Klaviyo while a field never set is left alone (pydantic's `exclude_unset`).
Outputs are flattened JSON:API resources (`id` plus attributes).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, Self, TypeVar

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from cogent_cli.klaviyo.errors import KlaviyoError

T = TypeVar("T")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
CATALOG_PREFIX = "$custom:::$default:::"


def catalog_id(external_id: str) -> str:
    """Klaviyo's id of a catalog item or variant in the custom catalog: `$custom:::$default:::<external id>`."""
    return external_id if external_id.startswith(CATALOG_PREFIX) else CATALOG_PREFIX + external_id


_PLAIN = frozenset({str, int, float, bool, type(None)})


def jsonable(value: Any) -> Any:
    """Plain JSON values: Decimal money stays a JSON number (Klaviyo needs `value` numeric), times ISO 8601."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    # Plain dicts, lists and leaves first, without a call per leaf: event properties are mostly these.
    if kind is dict:
        return {k if type(k) is str else str(k): v if type(v) in _PLAIN else jsonable(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _PLAIN else jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else float(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, BaseModel):
        return jsonable(value.model_dump(exclude_none=True))
    return value


def json_number(amount: Decimal | int | float) -> int | float:
    """An amount as the JSON number Klaviyo reads: whole amounts as integers (within 2**53)."""
    if type(amount) is float:
        return int(amount) if amount.is_integer() and abs(amount) < 2**53 else amount
    number: int | float = jsonable(Decimal(str(amount)))
    return number


def iso(value: datetime) -> str:
    """RFC 3339 in UTC: `value.astimezone(UTC).isoformat()`, written by orjson (the same text, faster)."""
    return orjson.dumps(value.astimezone(UTC))[1:-1].decode()


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("must be timezone-aware (UTC)")
    return value


def _e164(value: str | None) -> str | None:
    if value is not None and not E164.match(value):
        raise ValueError(f"{value!r} is not an E.164 phone number such as +447700900123")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]
Phone = Annotated[str, AfterValidator(_e164)]
Amount = Decimal | int | float


class InputModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Location(InputModel):
    address1: str | None = None
    address2: str | None = None
    city: str | None = None
    country: str | None = None
    latitude: float | str | None = None
    longitude: float | str | None = None
    region: str | None = None
    zip: str | None = None
    timezone: str | None = None
    ip: str | None = None


class PatchProperties(InputModel):
    """Changes to list-valued custom properties. `append`/`unappend` are not idempotent."""

    append: dict[str, Any] | None = None
    unappend: dict[str, Any] | None = None
    unset: str | list[str] | None = None


_PROFILE_ATTRIBUTES = (
    "email",
    "phone_number",
    "external_id",
    "first_name",
    "last_name",
    "organization",
    "locale",
    "title",
    "image",
    "location",
    "properties",
)


class ProfileIn(InputModel):
    """A profile to create, update or upsert."""

    id: str | None = None
    email: str | None = None
    phone_number: Phone | None = None
    external_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    organization: str | None = None
    locale: str | None = None
    title: str | None = None
    image: str | None = None
    location: Location | None = None
    properties: dict[str, Any] | None = None
    patch_properties: PatchProperties | None = None

    def attributes(self) -> dict[str, Any]:
        """The attributes that were set, including explicit nulls (which clear the field)."""
        chosen = self.model_fields_set & set(_PROFILE_ATTRIBUTES)
        return {name: jsonable(getattr(self, name)) for name in _PROFILE_ATTRIBUTES if name in chosen}

    @property
    def appends(self) -> bool:
        """True when applying this twice would differ from applying it once."""
        patch = self.patch_properties
        return bool(patch and (patch.append or patch.unappend))

    def resource(self, *, with_id: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {"type": "profile", "attributes": self.attributes()}
        if with_id and self.id is not None:
            data["id"] = self.id
        if self.patch_properties is not None:
            data["meta"] = {"patch_properties": jsonable(self.patch_properties)}
        return data


_EVENT_PROFILE_FIELDS = ("email", "phone_number", "external_id", "first_name", "last_name")


class EventIn(InputModel):
    """One event for Klaviyo: a metric name, who it happened to, and what happened."""

    metric: Annotated[str, Field(min_length=1, max_length=127)]
    email: str | None = None
    phone_number: Phone | None = None
    external_id: str | None = None
    profile_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    profile_properties: dict[str, Any] | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    time: AwareDatetime | None = None
    value: Amount | None = None
    value_currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    # Klaviyo keeps only the first event per (profile, metric, unique_id): this is what makes resends safe.
    unique_id: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    backfill: bool = False

    @model_validator(mode="after")
    def _identified(self) -> Self:
        if not (self.email or self.phone_number or self.external_id or self.profile_id):
            raise ValueError("an event needs a profile identifier: email, phone_number, external_id or profile_id")
        return self

    @property
    def retry_safe(self) -> bool:
        """A resend cannot double-count: Klaviyo dedupes on unique_id, or on the explicit time otherwise."""
        return self.unique_id is not None or self.time is not None

    def profile_resource(self) -> dict[str, Any]:
        fields = self.__dict__
        attributes = {name: fields[name] for name in _EVENT_PROFILE_FIELDS if fields[name] is not None}
        if self.profile_properties:
            attributes["properties"] = jsonable(self.profile_properties)
        data: dict[str, Any] = {"type": "profile", "attributes": attributes}
        if self.profile_id:
            data["id"] = self.profile_id
        return data

    def event_attributes(self) -> dict[str, Any]:
        """Attributes shared by the single and bulk bodies (everything except the profile)."""
        return {"properties": jsonable(self.properties), **self.attributes_besides_properties()}

    def attributes_besides_properties(self) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "metric": {"data": {"type": "metric", "attributes": {"name": self.metric}}},
        }
        if self.time is not None:
            attributes["time"] = iso(self.time)
        if self.value is not None:
            attributes["value"] = json_number(self.value)
        if self.value_currency is not None:
            attributes["value_currency"] = self.value_currency
        if self.unique_id is not None:
            attributes["unique_id"] = self.unique_id
        if self.backfill:
            attributes["backfill"] = True
        return attributes


SubscriptionChannel = Literal["email", "sms"]


class SubscriptionIn(InputModel):
    """Marketing consent to record for one profile."""

    email: str | None = None
    phone_number: Phone | None = None
    profile_id: str | None = None
    channels: tuple[SubscriptionChannel, ...] = ("email",)
    # When the person actually consented; only sent with historical_import, and then required.
    consented_at: AwareDatetime | None = None
    age_gated_date_of_birth: date | None = None

    @model_validator(mode="after")
    def _channels_have_identifiers(self) -> Self:
        if not self.channels:
            raise ValueError("give at least one channel")
        if "email" in self.channels and not self.email:
            raise ValueError("email consent needs an email address")
        if "sms" in self.channels and not self.phone_number:
            raise ValueError("SMS consent needs a phone_number")
        return self


class UnsubscriptionIn(InputModel):
    email: str | None = None
    phone_number: Phone | None = None
    channels: tuple[SubscriptionChannel, ...] = ("email",)

    @model_validator(mode="after")
    def _channels_have_identifiers(self) -> Self:
        if not self.channels:
            raise ValueError("give at least one channel")
        if "email" in self.channels and not self.email:
            raise ValueError("email unsubscribe needs an email address")
        if "sms" in self.channels and not self.phone_number:
            raise ValueError("SMS unsubscribe needs a phone_number")
        return self


InventoryPolicy = Literal[0, 1, 2]


class VariantInventory(InputModel):
    """A stock level for one catalog variant (`id` is Klaviyo's, see `catalog_id`)."""

    id: str
    inventory_quantity: Amount
    # 1 hides the variant from recommendation feeds when out of stock; 0 and 2 do not.
    inventory_policy: InventoryPolicy | None = None

    def attributes(self) -> dict[str, Any]:
        attributes: dict[str, Any] = {"inventory_quantity": json_number(self.inventory_quantity)}
        if self.inventory_policy is not None:
            attributes["inventory_policy"] = self.inventory_policy
        return attributes


class CatalogItemIn(InputModel):
    external_id: str
    title: str
    description: str
    url: str
    price: Amount | None = None
    image_full_url: str | None = None
    image_thumbnail_url: str | None = None
    images: list[str] | None = None
    custom_metadata: dict[str, Any] | None = None
    published: bool | None = None
    category_ids: tuple[str, ...] = ()

    def resource(self) -> dict[str, Any]:
        attributes = jsonable(self.model_dump(exclude_none=True, exclude={"category_ids"}))
        attributes |= {"integration_type": "$custom", "catalog_type": "$default"}
        data: dict[str, Any] = {"type": "catalog-item", "attributes": attributes}
        if self.category_ids:
            data["relationships"] = {
                "categories": {"data": [{"type": "catalog-category", "id": c} for c in self.category_ids]}
            }
        return data


class CatalogVariantIn(InputModel):
    item_id: str
    external_id: str
    title: str
    description: str
    sku: str
    inventory_quantity: Amount
    price: Amount
    url: str
    inventory_policy: InventoryPolicy | None = None
    image_full_url: str | None = None
    image_thumbnail_url: str | None = None
    images: list[str] | None = None
    custom_metadata: dict[str, Any] | None = None
    published: bool | None = None

    def resource(self) -> dict[str, Any]:
        attributes = jsonable(self.model_dump(exclude_none=True, exclude={"item_id"}))
        attributes |= {"integration_type": "$custom", "catalog_type": "$default"}
        return {
            "type": "catalog-variant",
            "attributes": attributes,
            "relationships": {"item": {"data": {"type": "catalog-item", "id": catalog_id(self.item_id)}}},
        }


class CatalogVariantUpdate(InputModel):
    """Fields to change on a variant; fields left unset are not sent."""

    title: str | None = None
    sku: str | None = None
    inventory_quantity: Amount | None = None
    inventory_policy: InventoryPolicy | None = None
    price: Amount | None = None
    url: str | None = None
    image_full_url: str | None = None
    image_thumbnail_url: str | None = None
    images: list[str] | None = None
    custom_metadata: dict[str, Any] | None = None
    published: bool | None = None

    def attributes(self) -> dict[str, Any]:
        return jsonable(self.model_dump(exclude_unset=True))


BackInStockChannel = Literal["EMAIL", "SMS", "PUSH", "WHATSAPP"]


class BackInStockIn(InputModel):
    variant_id: str
    channels: tuple[BackInStockChannel, ...] = ("EMAIL",)
    email: str | None = None
    phone_number: Phone | None = None
    external_id: str | None = None
    profile_id: str | None = None

    @model_validator(mode="after")
    def _identified(self) -> Self:
        if not self.channels:
            raise ValueError("give at least one channel")
        if not (self.email or self.phone_number or self.external_id or self.profile_id):
            raise ValueError("a back-in-stock subscription needs email, phone_number, external_id or profile_id")
        return self


# Outputs ----------------------------------------------------------------------------------------


class Resource(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str

    @classmethod
    def from_resource(cls, resource: Mapping[str, Any]) -> Self:
        return cls.model_validate({**(resource.get("attributes") or {}), "id": resource["id"]})


class Profile(Resource):
    email: str | None = None
    phone_number: str | None = None
    external_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    organization: str | None = None
    locale: str | None = None
    title: str | None = None
    image: str | None = None
    created: datetime | None = None
    updated: datetime | None = None
    last_event_date: datetime | None = None
    location: dict[str, Any] | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    subscriptions: dict[str, Any] | None = None


class KlaviyoEvent(Resource):
    timestamp: int | None = None
    datetime: _dt.datetime | None = None
    event_properties: dict[str, Any] = Field(default_factory=dict)
    uuid: str | None = None
    metric_id: str | None = None
    profile_id: str | None = None

    @classmethod
    def from_resource(cls, resource: Mapping[str, Any]) -> Self:
        relationships = resource.get("relationships") or {}

        def related(name: str) -> str | None:
            data = (relationships.get(name) or {}).get("data")
            return data.get("id") if isinstance(data, dict) else None

        return cls.model_validate(
            {
                **(resource.get("attributes") or {}),
                "id": resource["id"],
                "metric_id": related("metric"),
                "profile_id": related("profile"),
            }
        )


class Metric(Resource):
    name: str
    created: datetime | None = None
    updated: datetime | None = None
    integration: dict[str, Any] | None = None


class CatalogItem(Resource):
    external_id: str | None = None
    title: str | None = None
    description: str | None = None
    price: float | None = None
    url: str | None = None
    image_full_url: str | None = None
    published: bool | None = None
    custom_metadata: dict[str, Any] | None = None
    created: datetime | None = None
    updated: datetime | None = None


class CatalogVariant(Resource):
    external_id: str | None = None
    title: str | None = None
    sku: str | None = None
    inventory_quantity: float | None = None
    inventory_policy: int | None = None
    price: float | None = None
    url: str | None = None
    published: bool | None = None
    created: datetime | None = None
    updated: datetime | None = None


class BulkJob(Resource):
    """A Klaviyo bulk job (profile import, suppression, catalog update); poll it by `id`."""

    type: str
    status: str | None = None
    total_count: int | None = None
    completed_count: int | None = None
    failed_count: int | None = None
    skipped_count: int | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    expires_at: datetime | None = None
    errors: list[Any] | None = None

    @classmethod
    def from_resource(cls, resource: Mapping[str, Any]) -> Self:
        return cls.model_validate(
            {**(resource.get("attributes") or {}), "id": resource["id"], "type": resource.get("type", "")}
        )

    @property
    def done(self) -> bool:
        return self.status in ("complete", "cancelled")


class ProfileImportFailure(Resource):
    """One profile a bulk import job could not import."""

    code: str | None = None
    title: str | None = None
    detail: str | None = None
    source: dict[str, Any] | None = None
    original_payload: dict[str, Any] | None = None

    @property
    def pointer(self) -> str | None:
        return (self.source or {}).get("pointer")


@dataclass
class BatchFailure(Generic[T]):
    items: list[T]
    error: KlaviyoError


@dataclass
class BulkOutcome(Generic[T]):
    """What a call split into several requests achieved."""

    requests: int = 0
    accepted: int = 0
    jobs: list[BulkJob] = field(default_factory=list)
    failures: list[BatchFailure[T]] = field(default_factory=list)
