"""Typed names for what handlers receive by injection (Litestar resolves them by name)."""

from __future__ import annotations

from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from facility_share.settings import Settings
from facility_share.web.i18n import I18n

DbSession = NamedDependency[AsyncSession]
Lang = NamedDependency[I18n]
AppSettings = NamedDependency[Settings]
