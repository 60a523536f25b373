"""``facility-share payments reconcile``: compare local payments with Stripe and repair what
missed webhooks left behind, through the same functions the webhooks use.

Each payment is reconciled in its own transaction, so one that Stripe cannot answer for does
not hold back the others (it is reported and the command exits non-zero).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from facility_share.db import Database
from facility_share.db.models import utcnow
from facility_share.errors import Conflict, FacilityShareError
from facility_share.payments import advances, services
from facility_share.payments.gateway import Gateway, gateway_for
from facility_share.settings import Settings


@dataclass
class Summary:
    checked: int = 0
    changed: int = 0
    changes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Advances of cancelled bookings settled, refunds sent to Stripe.
    swept: list[str] = field(default_factory=list)


async def run_reconcile(settings: Settings, since: datetime, *, on_start: Callable[[int], None] | None = None,
                        on_step: Callable[[list[services.Change]], None] | None = None,
                        gateway: Gateway | None = None) -> Summary:
    """Reconcile every Stripe payment still open or touched since ``since``.

    Raises:
        Conflict: no Stripe keys are configured (offline mode: nothing to compare with).
    """
    own_gateway = gateway is None
    gateway = gateway or gateway_for(settings)
    if gateway is None:
        raise Conflict("no Stripe keys are configured (offline mode); there is nothing to reconcile with")
    database = Database(settings.database_url, null_pool=True)
    summary = Summary()
    try:
        async with database.session() as session:
            ids = await services.payments_to_reconcile(session, since)
        if on_start:
            on_start(len(ids))
        for payment_id in ids:
            changes: list[services.Change] = []
            try:
                async with database.session(write=True) as session:
                    changes = await services.reconcile_payment(session, gateway, payment_id, now=utcnow())
                    await session.commit()
            except FacilityShareError as exc:
                summary.errors.append(f"payment {payment_id}: {exc.message}")
            summary.checked += 1
            summary.changed += bool(changes)
            summary.changes.extend(str(c) for c in changes)
            if on_step:
                on_step(changes)
        # Advances of cancelled bookings, and refunds recorded but not yet sent to Stripe.
        summary.swept = await advances.sweep(database, settings, gateway)
    finally:
        await database.dispose()
        if own_gateway:
            await gateway.close()
    return summary
