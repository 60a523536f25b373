"""What the accounts API returns and accepts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass
class Me:
    id: int
    email: str
    name: str
    locale: str
    roles: list[str]
    managed_unit_ids: list[int]
    enterprise_id: int | None
    enterprise_verified: bool


@dataclass
class TokenIn:
    name: str
    days: int | None = None


@dataclass
class TokenOut:
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass
class NewToken(TokenOut):
    token: str  # shown once


@dataclass
class EnterpriseOut:
    id: int
    uscc: str
    name: str
    verified: bool
    registered_in_district: bool
    tech_sme: bool
    hnte: bool
    tier: str
    controller: str
    created_at: datetime


@dataclass
class EnterpriseStatusIn:
    verified: bool
    registered_in_district: bool
    tech_sme: bool
    hnte: bool
    tier: str
    controller: str = ""
    effective_from: date | None = None
    reason: str = ""


@dataclass
class RoleIn:
    role: str
    unit_code: str | None = None


@dataclass
class UserOut:
    id: int
    email: str
    name: str
    enterprise_id: int | None
    roles: list[str]
    is_active: bool


@dataclass
class QualificationIn:
    user_email: str
    resource_code: str
    valid_until: date
    note: str = ""


@dataclass
class QualificationOut:
    id: int
    user_email: str
    resource_code: str
    valid_until: date
    revoked: bool
