"""Policy versions in the database: import validated files, find the version in force.

Import is idempotent by (code, version) and digest: an unchanged version writes nothing; a new
version is inserted; a changed version is rewritten only while no approved settlement uses it
(an approved settlement is final, so the policy it names must stay what it was: publish the
change as a new version instead). Two versions of one code may not start on the same day,
counting those already in the database; otherwise the later-starting version is in force.
Everything is checked before anything is written; the caller commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from facility_share import audit
from facility_share.db.models import PolicyVersion, Settlement, utcnow
from facility_share.errors import N_, CatalogInvalid, Conflict, NotFound
from facility_share.finance.policy import LoadedPolicy, Policy, overlap_problems, policy_from_document


@dataclass
class PolicyImportSummary:
    """What an import did, as ``code@version`` names."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def written(self) -> int:
        return len(self.created) + len(self.updated)

    def as_dict(self) -> dict[str, list[str]]:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged}


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    """A policy version as the database holds it, validated again from its document."""

    id: int
    code: str
    version: str
    digest: str
    source_file: str
    policy: Policy


def _name(code: str, version: str) -> str:
    return f"{code}@{version}"


async def _approved_settlements(session: AsyncSession, version_id: int) -> list[int]:
    rows = await session.execute(
        select(Settlement.id)
        .where(Settlement.policy_version_id == version_id, Settlement.status == "approved")
        .order_by(Settlement.id)
    )
    return list(rows.scalars())


async def import_policies(
    session: AsyncSession, loaded: Sequence[LoadedPolicy], *, actor_id: int | None = None
) -> PolicyImportSummary:
    """Write validated policy versions (from ``load_policies``) to ``policy_versions``.

    Raises:
        Conflict: a changed file for a version that an approved settlement uses.
        CatalogInvalid: two versions of one code would start on the same day (counting
            those in the database), or one version is passed twice.
    """
    existing = {(row.code, row.version): row for row in (await session.execute(select(PolicyVersion))).scalars()}
    incoming = {(item.code, item.version): item for item in loaded}
    problems = overlap_problems(
        [(item.policy, item.source_file) for item in loaded]
        + [(row, row.source_file or f"the database ({_name(row.code, row.version)})")
           for key, row in existing.items() if key not in incoming]
    )
    if problems:
        raise CatalogInvalid(problems)

    summary = PolicyImportSummary()
    plan: list[tuple[LoadedPolicy, PolicyVersion | None]] = []
    for key in sorted(incoming):
        item, row = incoming[key], existing.get(key)
        name = _name(*key)
        if row is not None and row.digest == item.digest:
            summary.unchanged.append(name)
            continue
        if row is not None:
            approved = await _approved_settlements(session, row.id)
            if approved:
                ids = ", ".join(f"#{i}" for i in approved)
                raise Conflict(
                    f"{item.source_file}: {name} differs from the version already published, and approved "
                    f"settlement{'s' if len(approved) > 1 else ''} {ids} used it; an approved settlement never "
                    "changes, so restore the file and publish the change as a new version (a new file with a "
                    "higher version and effective dates that do not overlap)",
                    detail={"policy": name, "settlements": approved},
                )
        plan.append((item, row))

    now = utcnow()
    for item, row in plan:
        policy = item.policy
        values = {
            "title_zh": policy.title_zh, "title_en": policy.title_en,
            "effective_from": policy.effective_from, "effective_until": policy.effective_until,
            "digest": item.digest, "document": policy.document(), "source_file": item.source_file, "loaded_at": now,
        }
        if row is None:
            row = PolicyVersion(code=policy.code, version=policy.version, **values)
            session.add(row)
            await session.flush()
            summary.created.append(_name(policy.code, policy.version))
            audit.record(session, action="publish", entity="policy_version", entity_id=row.id, actor_id=actor_id,
                         actor_kind="user" if actor_id else "import",
                         after={"policy": _name(policy.code, policy.version), "digest": item.digest,
                                "source_file": item.source_file}, at=now)
        else:
            before = {"digest": row.digest, "effective_from": row.effective_from, "effective_until": row.effective_until}
            for name, value in values.items():
                setattr(row, name, value)
            await session.flush()
            summary.updated.append(_name(policy.code, policy.version))
            audit.record(session, action="republish", entity="policy_version", entity_id=row.id, actor_id=actor_id,
                         actor_kind="user" if actor_id else "import", before=before,
                         after={"digest": item.digest, "effective_from": policy.effective_from,
                                "effective_until": policy.effective_until, "source_file": item.source_file},
                         reason="the file changed while no approved settlement used this version", at=now)
    return summary


def _stored(row: PolicyVersion) -> StoredPolicy:
    policy = policy_from_document(row.document, f"policy_versions #{row.id} ({_name(row.code, row.version)})")
    return StoredPolicy(row.id, row.code, row.version, row.digest, row.source_file, policy)


async def get_policy_version(session: AsyncSession, version_id: int) -> StoredPolicy:
    """A stored version by id.

    Raises:
        NotFound: no such version.
    """
    row = await session.get(PolicyVersion, version_id)
    if row is None:
        raise NotFound(f"no policy version #{version_id}; list them with `facility-share policies import`")
    return _stored(row)


async def list_policy_versions(session: AsyncSession) -> list[StoredPolicy]:
    """Every stored version, by code and effective date."""
    rows = await session.execute(select(PolicyVersion).order_by(PolicyVersion.code, PolicyVersion.effective_from))
    return [_stored(row) for row in rows.scalars()]


async def policy_version_in_force(session: AsyncSession, code: str, on: date) -> StoredPolicy:
    """The stored version of policy ``code`` in force on a date: of the versions whose own
    dates cover it, the one that starts latest.

    Raises:
        NotFound: no version of that code covers the date (or the code is unknown).
    """
    rows = (await session.execute(
        select(PolicyVersion).where(PolicyVersion.code == code).order_by(PolicyVersion.effective_from.desc())
    )).scalars().all()
    for row in rows:
        if row.effective_from <= on and (row.effective_until is None or on <= row.effective_until):
            return _stored(row)
    if not rows:
        raise NotFound.translatable(N_("no policy '%(code)s' is loaded; run `facility-share policies import`"), code=code)
    spans = "; ".join(f"{r.version}: {r.effective_from} – {r.effective_until or 'open'}" for r in reversed(rows))
    raise NotFound(f"no version of policy {code!r} is in force on {on} ({spans}); publish one that covers it")
