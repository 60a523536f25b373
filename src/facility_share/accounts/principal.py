"""Who is calling: the signed-in user with their roles, as plain data for guards and services."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    email: str
    name: str
    locale: str = "zh_CN"
    enterprise_id: int | None = None
    enterprise_verified: bool = False
    roles: frozenset[str] = field(default_factory=frozenset)
    managed_unit_ids: frozenset[int] = field(default_factory=frozenset)
    via: str = "session"  # session | token

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def is_finance(self) -> bool:
        return "finance" in self.roles or self.is_admin

    @property
    def is_manager(self) -> bool:
        return bool(self.managed_unit_ids) or self.is_admin

    @property
    def is_enterprise_member(self) -> bool:
        return self.enterprise_id is not None

    def manages(self, unit_id: int) -> bool:
        return self.is_admin or unit_id in self.managed_unit_ids

    def reads_all(self) -> bool:
        """Finance reads everything; admins do everything."""
        return self.is_finance
