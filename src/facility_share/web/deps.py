"""Typed names for what handlers receive by injection (Litestar resolves them by name)."""

from __future__ import annotations

from typing import Annotated

from litestar.di import NamedDependency
from litestar.params import PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from facility_share.settings import Settings
from facility_share.web.i18n import I18n

DbSession = NamedDependency[AsyncSession]
Lang = NamedDependency[I18n]
AppSettings = NamedDependency[Settings]

# Database ids are 32-bit; larger numbers in a path are a 400, not a driver overflow.
RecordId = Annotated[int, PathParameter(ge=1, le=2_147_483_647)]
