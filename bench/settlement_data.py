"""A synthetic year of platform data on PostgreSQL, for the settlement benchmark.

``generate(dsn, Scale(...))`` fills a freshly migrated database with one year (2026, district
time) of finished services and everything a settlement reads:

- managing units (one per eight resources), each with a manager; resources: instruments,
  and now and then a workshop whose two lines are what gets booked; about one in ten is not
  open for sharing; hourly rates per customer class and a start-up fee on some;
- enterprises with valid USCCs and a status history: every tier and tech SME, some never
  registered in the district or not verified, about one in five changing standing during the
  year (tier up, tech-SME flag, verification, registration, a new controller), a few whose
  first status is recorded only mid-year; a quarter of them in groups of two to four under
  one actual controller; one member user each;
- unit relations: about half the units have an internal enterprise, most have related ones;
- the usage logs (current versions, source ``manager``, spread over the days of the year and
  over resources and enterprises with skewed popularity), 40 % of them from a completed
  booking. Each enterprise buys from a few units — five on average (``units_per_enterprise``),
  its own group's units among them and five times as often — and one service in fifty from
  anywhere: enterprises come back to the labs they know. (With ``units_per_enterprise=0``
  every enterprise buys from every unit alike, which multiplies the enterprise × unit pairs a
  settlement groups by.); one service charge per log, priced by customer class; payments (offline, succeeded)
  for most, a few paid only after the settlement's cut-off, some unpaid or still processing;
  refunds (full and partial) on 2 % of paid charges; ratings on 30 % of booked services and
  10 % of walk-ins.

Every row gives every column of its table explicitly (the schema is checked first, so a new
column in a later migration stops the generator with a clear message instead of a silent
default). Big tables go in with ``COPY`` (asyncpg ``copy_records_to_table``) in chunks, so the
generator's memory stays small. A fixed seed gives the same data on every run.
"""

from __future__ import annotations

import bisect
import itertools
import json
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from stdnum.cn import uscc as uscc_number

YEAR = 2026
# District time is UTC+8 all year: local midnight of 1 January 2026 in UTC.
YEAR_START_UTC = datetime(YEAR, 1, 1, tzinfo=UTC) - timedelta(hours=8)
DAYS = 365
# The settlement is computed "now" = the cut-off: 1 April 2027, 00:00 district time.
CUTOFF = datetime(YEAR + 1, 4, 1, tzinfo=UTC) - timedelta(hours=8)
CHUNK = 50_000

CLASS_WEIGHTS = {"none": 35, "tech_sme": 30, "eaglet": 12, "gazelle": 10, "leader_candidate": 7, "leader": 6}
TIER_UP = {"none": "eaglet", "eaglet": "gazelle", "gazelle": "leader_candidate", "leader_candidate": "leader", "leader": "leader"}
DURATIONS = (30, 45, 60, 90, 120, 180, 240, 360, 480)
DURATION_WEIGHTS = (10, 8, 20, 14, 16, 12, 10, 6, 4)
UNIT_KINDS = ("university", "institute", "enterprise", "incubator", "pilot_base")


@dataclass(frozen=True)
class Scale:
    usage: int = 500_000
    enterprises: int = 2_000
    resources: int = 400
    seed: int = 2026
    # How many managing units an enterprise buys from, on average (0: every unit alike).
    units_per_enterprise: int = 5

    @property
    def units(self) -> int:
        return max(1, self.resources // 8)

    def label(self) -> str:
        return (f"usage={self.usage} enterprises={self.enterprises} resources={self.resources} seed={self.seed} "
                f"units_per_enterprise={self.units_per_enterprise} generator=3")


# --- columns ------------------------------------------------------------------------------------
# The order of every record below. Checked against the migrated schema before loading.

COLUMNS: dict[str, tuple[str, ...]] = {
    "categories": ("id", "code", "parent_id", "name_zh", "name_en", "level", "position", "content_hash", "retired_at",
                   "created_at", "updated_at"),
    "managing_units": ("id", "code", "name_zh", "name_en", "kind", "uscc", "address_zh", "address_en", "contact_name",
                       "contact_phone", "contact_email", "website", "description_zh", "description_en", "timezone",
                       "source_file", "source_digest", "content_hash", "retired_at", "created_at", "updated_at"),
    "resources": ("id", "code", "kind", "parent_id", "unit_id", "category_id", "name_zh", "name_en", "model", "maker",
                  "country", "original_value_fen", "commissioned_on", "location_zh", "location_en", "timezone", "capacity",
                  "open_for_sharing", "rated_hours_per_year", "specs_zh", "specs_en", "functions_zh", "functions_en",
                  "capabilities", "sharing_modes", "contact_name", "contact_phone", "contact_email", "booking_unit",
                  "slot_minutes", "min_minutes", "max_minutes", "lead_minutes", "horizon_days", "approval_required",
                  "self_operation_allowed", "qualification_required", "working_calendar", "cancellation_hours",
                  "billing_basis", "shifts", "search_text", "min_price_fen", "source_file", "content_hash", "retired_at",
                  "created_at", "updated_at", "peak_hours", "no_show_fee_fen", "checkin_grace_minutes",
                  "no_show_grace_minutes"),
    "fee_items": ("id", "resource_id", "position", "basis", "label_zh", "label_en", "internal_fen", "district_fen",
                  "external_fen", "unit_minutes", "minimum_units", "period", "rounding", "note_zh", "note_en"),
    "users": ("id", "email", "name", "phone", "password_hash", "locale", "enterprise_id", "is_active", "last_login_at",
              "created_at", "updated_at"),
    "role_grants": ("id", "user_id", "role", "unit_id", "granted_at"),
    "enterprises": ("id", "uscc", "name", "name_en", "address", "contact_name", "contact_phone", "registered_in_district",
                    "tech_sme", "hnte", "tier", "controller", "verified_at", "verified_by_id", "created_at", "updated_at"),
    "enterprise_status_history": ("id", "enterprise_id", "effective_from", "registered_in_district", "verified", "tech_sme",
                                  "hnte", "tier", "controller", "recorded_at", "recorded_by_id"),
    "unit_relations": ("id", "enterprise_id", "unit_id", "relation"),
    "bookings": ("id", "resource_id", "enterprise_id", "user_id", "starts_at", "ends_at", "quantity", "samples", "exclusive",
                 "mode", "purpose", "status", "decision_deadline", "decided_by_id", "decided_at", "decision_reason",
                 "customer_class", "estimate_fen", "version", "created_at", "updated_at"),
    "usage_logs": ("id", "resource_id", "booking_id", "enterprise_id", "started_at", "ended_at", "samples", "operator", "mode",
                   "source", "supersedes_id", "session_id", "reason", "note", "idempotency_key", "agent_key_id",
                   "recorded_by_id", "recorded_at"),
    "charges": ("id", "kind", "usage_log_id", "booking_id", "resource_id", "enterprise_id", "service_date", "customer_class",
                "lines", "total_fen", "explanation_zh", "explanation_en", "status", "paid_at", "payment_method",
                "payment_reference", "void_reason", "created_at", "updated_at", "paid_fen", "refunded_fen", "money_as_of"),
    "payments": ("id", "charge_id", "provider", "status", "currency", "amount_fen", "amount_received_fen", "refunded_fen",
                 "method", "reference", "stripe_payment_intent_id", "stripe_charge_id", "idempotency_key", "failure_code",
                 "failure_message", "stripe_updated_at", "succeeded_at", "created_by_id", "created_at", "updated_at"),
    "refunds": ("id", "payment_id", "charge_id", "amount_fen", "status", "cause", "reason", "stripe_refund_id",
                "idempotency_key", "failure_message", "succeeded_at", "requested_by_id", "created_at", "updated_at"),
    "ratings": ("id", "booking_id", "usage_session_id", "resource_id", "enterprise_id", "user_id", "stars", "comment",
                "created_at"),
}


async def check_schema(conn: asyncpg.Connection) -> None:
    """Every column of every loaded table is given, and nothing else: say which differ."""
    problems = []
    for table, columns in COLUMNS.items():
        rows = await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1", table
        )
        actual = {r["column_name"] for r in rows}
        if not actual:
            problems.append(f"{table}: no such table (is the database migrated?)")
            continue
        if missing := actual - set(columns):
            problems.append(f"{table}: the generator does not fill {sorted(missing)}")
        if unknown := set(columns) - actual:
            problems.append(f"{table}: the schema has no {sorted(unknown)}")
    if problems:
        raise SystemExit("bench/settlement_data.py is out of date with the schema; update COLUMNS and the rows:\n  "
                         + "\n  ".join(problems))


async def _copy(conn: asyncpg.Connection, table: str, records: list[tuple[Any, ...]]) -> None:
    if records:
        await conn.copy_records_to_table(table, records=records, columns=list(COLUMNS[table]))


def _uscc(prefix: str, number: int) -> str:
    body = f"{prefix}{number:07d}"
    return body + uscc_number.calc_check_digit(body)


def _local_day(day: int) -> date:
    return date(YEAR, 1, 1) + timedelta(days=day)


def _at(d: date, hour: int = 9) -> datetime:
    """A district-local date and hour as a UTC instant."""
    return datetime(d.year, d.month, d.day, hour, tzinfo=UTC) - timedelta(hours=8)


def _charge_lines(rate_half_hour: int, halves: int, setup: int) -> str:
    lines = [{"label_zh": "机时", "label_en": "Hour", "basis": "hour", "units": halves, "rate_fen": rate_half_hour,
              "amount_fen": rate_half_hour * halves, "unit_minutes": 30, "explanation": f"{halves} × 30 min"}]
    if setup:
        lines.append({"label_zh": "开机", "label_en": "Start-up", "basis": "setup", "units": 1, "rate_fen": setup,
                      "amount_fen": setup, "unit_minutes": 60, "explanation": "start-up fee"})
    return json.dumps(lines, ensure_ascii=False)


@dataclass
class _Resource:
    id: int
    unit: int
    rates: dict[str, int]  # fen per hour by customer class
    setup: dict[str, int]
    capacity: int


@dataclass
class _Standing:
    effective_from: date
    registered: bool
    verified: bool
    tech_sme: bool
    hnte: bool
    tier: str
    controller: str


async def generate(dsn: str, scale: Scale, *, progress: Any = print) -> dict[str, int]:
    """Fill the migrated, empty database at ``dsn``; returns the row count of each table."""
    rng = random.Random(scale.seed)
    conn = await asyncpg.connect(dsn)
    try:
        await check_schema(conn)
        if await conn.fetchval("SELECT count(*) FROM usage_logs"):
            raise SystemExit("the benchmark database already holds usage logs; it must be freshly migrated")
        counts: dict[str, int] = {}
        created = datetime(YEAR - 3, 6, 1, tzinfo=UTC)

        # Categories: a top class and two subclasses.
        categories = [
            (1, "01", None, "分析仪器", "Analytical instruments", 1, 0, "", None, created, created),
            (2, "0105", 1, "色谱仪器", "Chromatographs", 2, 1, "", None, created, created),
            (3, "0201", None, "物理性能测试仪器", "Physical property testers", 1, 2, "", None, created, created),
        ]
        await _copy(conn, "categories", categories)

        # Units, each with a manager user; user 1 is an admin, user 2 the finance officer.
        n_units = scale.units
        units = [
            (u + 1, f"BU{u:04d}", f"基准管理单位{u}", f"Bench unit {u}", UNIT_KINDS[u % len(UNIT_KINDS)], _uscc("12120222MB", u),
             f"武清区基准路{u}号", f"No. {u} Bench Road, Wuqing", f"联系人{u}", "022-00000000", f"unit{u}@bench.example.cn", "",
             "", "", "Asia/Shanghai", "", "", "", None, created, created)
            for u in range(n_units)
        ]
        await _copy(conn, "managing_units", units)
        admin_id, finance_id = 1, 2
        manager_of_unit = {u + 1: 3 + u for u in range(n_units)}
        member_base = 3 + n_units  # member user of enterprise e: member_base + e - 1
        users = [
            (admin_id, "admin@bench.example.cn", "admin", "", "bench-no-login", "zh_CN", None, True, None, created, created),
            (finance_id, "finance@bench.example.cn", "finance", "", "bench-no-login", "zh_CN", None, True, None, created, created),
        ]
        users += [(uid, f"manager{unit}@bench.example.cn", f"manager {unit}", "", "bench-no-login", "zh_CN", None, True, None,
                   created, created) for unit, uid in manager_of_unit.items()]
        grants = [(1, admin_id, "admin", None, created), (2, finance_id, "finance", None, created)]
        grants += [(2 + unit, uid, "unit_manager", unit, created) for unit, uid in manager_of_unit.items()]

        # Resources: every 25th is a workshop booked through its two lines.
        resources: list[tuple[Any, ...]] = []
        fee_items: list[tuple[Any, ...]] = []
        leaves: list[_Resource] = []
        unit_resources: dict[int, list[_Resource]] = {}
        parent_unit: dict[int, int] = {}
        for r in range(scale.resources):
            rid = r + 1
            if r % 25 == 0 and r + 2 < scale.resources:
                kind, parent, capacity = "workshop", None, 2
            elif r % 25 in (1, 2) and (r - r % 25) + 2 < scale.resources:
                kind, parent, capacity = "line", rid - r % 25, 1
            else:
                kind, parent, capacity = "instrument", None, 1
            unit = parent_unit[parent] if parent else min(n_units, r // 8 + 1)
            parent_unit[rid] = unit
            open_ = rng.random() >= 0.1 if parent is None else resources[parent - 1][17]
            district = rng.randrange(50, 400) * 200  # even fen per hour: half hours bill whole fen
            rates = {"internal": district // 2, "district": district, "external": district * 13 // 10 // 2 * 2}
            setup_district = rng.choice((0, 0, 2000, 5000))
            setup = {"internal": setup_district // 2, "district": setup_district, "external": setup_district * 13 // 10}
            value_fen = rng.randrange(500_000, 20_000_000) * 100
            code = f"BR{r:05d}"
            name = {"workshop": ("中试车间", "Pilot workshop"), "line": ("中试线", "Pilot line"),
                    "instrument": ("液相色谱仪", "HPLC system")}[kind]
            resources.append((
                rid, code, kind, parent, unit, 2 if kind == "instrument" else 3, f"{name[0]} {r}", f"{name[1]} {r}", f"M-{r}",
                "Example Instruments", "CN", value_fen, date(2020, 1, 15), "", "", "Asia/Shanghai", capacity, open_,
                rng.choice((1400, 1400, 800)), "", "", "", "", "[]", "[]", "", "", "", "slot", 30, 30, 480, 0, 60, True,
                False, True, True, 24, "actual", "[]", f"{name[0]} {name[1].lower()} {r}", rates["district"], "", "", None,
                created, created, "[]", 0, 15, 30,
            ))
            fee_items.append((len(fee_items) + 1, rid, 0, "hour", "机时", "Hour", rates["internal"], rates["district"],
                              rates["external"], 30, 1, "all", "up", "", ""))
            if setup_district:
                fee_items.append((len(fee_items) + 1, rid, 1, "setup", "开机", "Start-up", setup["internal"], setup["district"],
                                  setup["external"], 60, 1, "all", "up", "", ""))
            if kind != "workshop":
                item = _Resource(rid, unit, rates, setup, capacity)
                leaves.append(item)
                unit_resources.setdefault(unit, []).append(item)
        await _copy(conn, "resources", resources)
        await _copy(conn, "fee_items", fee_items)

        # Enterprises and their status history.
        n_ent = scale.enterprises
        classes = rng.choices(list(CLASS_WEIGHTS), weights=list(CLASS_WEIGHTS.values()), k=n_ent)
        controller_of = [""] * n_ent
        grouped = rng.sample(range(n_ent), n_ent // 4)
        group = 0
        while grouped:
            size = rng.randint(2, 4)
            members, grouped = grouped[:size], grouped[size:]
            for m in members:
                controller_of[m] = f"实际控制人{group:05d}"
            group += 1
        histories: list[list[_Standing]] = []
        for e in range(n_ent):
            klass = classes[e]
            late_start = rng.random() < 0.02
            first = (_local_day(rng.randrange(30, 300)) if late_start
                     else date(YEAR - 3, 1, 1) + timedelta(days=rng.randrange(3 * 365)))
            standing = _Standing(
                effective_from=first, registered=rng.random() < 0.88, verified=rng.random() < 0.9,
                tech_sme=klass == "tech_sme" or (klass != "none" and rng.random() < 0.3),
                hnte=rng.random() < 0.2, tier="none" if klass in ("none", "tech_sme") else klass, controller=controller_of[e],
            )
            history = [standing]
            changes = 0 if late_start else (2 if rng.random() < 0.04 else 1 if rng.random() < 0.2 else 0)
            days = sorted(rng.sample(range(31, 334), changes))
            for day in days:
                prev = history[-1]
                what = rng.choice(("tier", "tier", "tech_sme", "verify", "register", "controller"))
                nxt = _Standing(**{**prev.__dict__, "effective_from": _local_day(day)})
                if what == "tier":
                    nxt.tier = TIER_UP[prev.tier] if rng.random() < 0.8 else "none"
                elif what == "tech_sme":
                    nxt.tech_sme = not prev.tech_sme
                elif what == "verify":
                    nxt.verified = True
                elif what == "register":
                    nxt.registered = True
                else:
                    nxt.controller = f"实际控制人{rng.randrange(max(1, group)):05d}"
                history.append(nxt)
            histories.append(history)
        enterprises, status_rows = [], []
        for e, history in enumerate(histories):
            eid, last = e + 1, history[-1]
            first_verified = next((s.effective_from for s in history if s.verified), None)
            recorded = _at(history[0].effective_from)
            enterprises.append((
                eid, _uscc("91120222MA", e), f"基准企业{e:05d}有限公司", f"Bench Enterprise {e:05d} Co., Ltd.",
                f"武清区基准大道{e}号", f"联系人{e}", "13800000000", last.registered, last.tech_sme, last.hnte, last.tier,
                last.controller, _at(first_verified) if first_verified and last.verified else None,
                admin_id if first_verified and last.verified else None, recorded, _at(last.effective_from),
            ))
            for s in history:
                status_rows.append((len(status_rows) + 1, eid, s.effective_from, s.registered, s.verified, s.tech_sme, s.hnte,
                                    s.tier, s.controller, _at(s.effective_from), admin_id))
        # Staff first (enterprises name their verifier), then enterprises, then their members.
        await _copy(conn, "users", users)
        await _copy(conn, "role_grants", grants)
        await _copy(conn, "enterprises", enterprises)
        await _copy(conn, "enterprise_status_history", status_rows)
        members = [(member_base + e, f"member{e}@bench.example.cn", f"member {e}", "", "bench-no-login", "zh_CN", e + 1, True,
                    None, created, created) for e in range(n_ent)]
        await _copy(conn, "users", members)
        users += members

        # Unit relations: about half the units have an internal enterprise, most have related ones.
        relation_of: dict[tuple[int, int], str] = {}
        for unit in range(1, n_units + 1):
            kinds = (["internal"] if rng.random() < 0.5 else []) + ["related"] * rng.choice((0, 1, 2, 3))
            for relation in kinds:
                eid = rng.randint(1, n_ent)
                if (eid, unit) not in relation_of:
                    relation_of[(eid, unit)] = relation
        relations = [(i + 1, eid, unit, rel) for i, ((eid, unit), rel) in enumerate(sorted(relation_of.items()))]
        await _copy(conn, "unit_relations", relations)
        registered_on = [[(s.effective_from, s.registered) for s in h] for h in histories]

        # Popularity: a few resources and enterprises carry much of the use. An enterprise buys
        # from a few units (its own group's among them, more often), and now and then elsewhere.
        popularity = {res.id: rng.lognormvariate(0, 0.6) for res in leaves}
        resource_cum = list(itertools.accumulate(popularity[res.id] for res in leaves))
        enterprise_cum = list(itertools.accumulate(rng.paretovariate(1.3) for _ in range(n_ent)))
        units_of_enterprise: dict[int, set[int]] = {}
        for (eid, unit) in relation_of:
            units_of_enterprise.setdefault(eid, set()).add(unit)
        all_units = sorted(unit_resources)
        favourites: list[tuple[list[_Resource], list[float]]] = []
        for e in range(n_ent):
            own_units = units_of_enterprise.get(e + 1, set())
            if scale.units_per_enterprise:
                k = min(len(all_units), 1 + int(rng.expovariate(1 / max(0.5, scale.units_per_enterprise - 1))))
                chosen = set(rng.sample(all_units, k)) | own_units
            else:
                chosen = set(all_units)
            pool = [res for unit in sorted(chosen) for res in unit_resources[unit]]
            favourites.append((pool, list(itertools.accumulate(
                popularity[res.id] * (5 if res.unit in own_units else 1) for res in pool))))
        unit_quality = {unit: rng.uniform(2.8, 4.9) for unit in range(1, n_units + 1)}
        duration_cum = list(itertools.accumulate(DURATION_WEIGHTS))

        counts.update(categories=len(categories), managing_units=n_units, users=len(users), role_grants=len(grants),
                      resources=len(resources), fee_items=len(fee_items), enterprises=n_ent,
                      enterprise_status_history=len(status_rows), unit_relations=len(relations))
        ids = {"bookings": 0, "payments": 0, "refunds": 0, "ratings": 0}
        made = 0
        r_total, e_total, d_total = resource_cum[-1], enterprise_cum[-1], duration_cum[-1]
        rand, randrange = rng.random, rng.randrange
        while made < scale.usage:
            size = min(CHUNK, scale.usage - made)
            bookings, logs, charges, payments, refunds, ratings = [], [], [], [], [], []
            for _ in range(size):
                made += 1
                uid = made
                eid = bisect.bisect_left(enterprise_cum, rand() * e_total) + 1
                if rand() < 0.02:
                    res = leaves[bisect.bisect_left(resource_cum, rand() * r_total)]
                else:
                    pool, cum = favourites[eid - 1]
                    res = pool[bisect.bisect_left(cum, rand() * cum[-1])]
                day = randrange(DAYS)
                minute = randrange(8 * 60, 19 * 60, 5)
                start = YEAR_START_UTC + timedelta(days=day, minutes=minute)
                minutes = DURATIONS[bisect.bisect_left(duration_cum, rand() * d_total)]
                end = start + timedelta(minutes=minutes, seconds=randrange(60))
                local = _local_day(day)
                relation = relation_of.get((eid, res.unit))
                registered = False
                for since, flag in registered_on[eid - 1]:
                    if since <= local:
                        registered = flag
                klass = "internal" if relation == "internal" else ("district" if registered else "external")
                halves = -(-minutes // 30)
                half_rate = res.rates[klass] // 2
                setup = res.setup[klass]
                total = half_rate * halves + setup
                samples = randrange(0, 6)
                member = member_base + eid - 1
                manager = manager_of_unit[res.unit]
                booking_id = None
                if rand() < 0.4:
                    ids["bookings"] += 1
                    booking_id = ids["bookings"]
                    slot_start = start - timedelta(minutes=start.minute % 30)
                    bookings.append((
                        booking_id, res.id, eid, member, slot_start, slot_start + timedelta(minutes=30 * (halves + 1)), 1,
                        samples, res.capacity == 1, "staff_operated", "样品检测", "completed", None, manager,
                        slot_start - timedelta(days=1), "", klass, total, 3, slot_start - timedelta(days=3), end,
                    ))
                logs.append((uid, res.id, booking_id, eid, start, end, samples, f"操作员{res.unit}", "staff_operated", "manager",
                             None, uid, "", "", None, None, manager, end))
                # Payment: most paid within weeks; a few only after the cut-off; some unpaid or processing.
                roll = rand()
                status, paid_at, paid_fen, refunded_fen, method, reference = "unpaid", None, 0, 0, "", ""
                # As the payments ledger keeps it: the latest succeeded payment or refund, else the issue.
                money_as_of = end
                if roll >= 0.08 and total > 0:
                    ids["payments"] += 1
                    pid = ids["payments"]
                    if roll < 0.085:
                        payments.append((pid, uid, "offline", "processing", "cny", total, 0, 0, "bank_transfer", "", None, "",
                                         f"bench-pay-{uid}", "", "", None, None, manager, end, end))
                        status = "processing"
                    else:
                        late = roll < 0.105
                        paid_at = (CUTOFF + timedelta(days=randrange(1, 60)) if late
                                   else end + timedelta(days=randrange(0, 45), seconds=randrange(86400)))
                        status, paid_fen, method, reference = "paid", total, "bank_transfer", f"BT{uid:09d}"
                        money_as_of = max(money_as_of, paid_at)
                        back = rand()
                        if back < 0.02:
                            ids["refunds"] += 1
                            refunded_fen = total if back < 0.01 or total < 2 else randrange(1, total)
                            refunded_at = paid_at + timedelta(days=randrange(1, 30))
                            money_as_of = max(money_as_of, refunded_at)
                            refunds.append((ids["refunds"], pid, uid, refunded_fen, "succeeded", "manager", "服务未完成部分退款",
                                            None, f"bench-refund-{uid}", "", refunded_at, manager, refunded_at, refunded_at))
                            if refunded_fen == total:
                                status = "refunded"
                        payments.append((pid, uid, "offline", "succeeded", "cny", total, total, refunded_fen, method, reference,
                                         None, "", f"bench-pay-{uid}", "", "", None, paid_at, manager, paid_at, paid_at))
                charges.append((
                    uid, "service", uid, booking_id, res.id, eid, start, klass, _charge_lines(half_rate, halves, setup), total,
                    f"{halves} 个半小时", f"{halves} half hours", status, paid_at, method, reference, "", end,
                    paid_at or end, paid_fen, refunded_fen, money_as_of,
                ))
                if rand() < (0.3 if booking_id else 0.1):
                    ids["ratings"] += 1
                    stars = min(5, max(1, round(rng.gauss(unit_quality[res.unit], 0.9))))
                    ratings.append((ids["ratings"], booking_id, None if booking_id else uid, res.id, eid, member, stars, "",
                                    end + timedelta(days=1)))
            for table, rows in (("bookings", bookings), ("usage_logs", logs), ("charges", charges), ("payments", payments),
                                ("refunds", refunds), ("ratings", ratings)):
                await _copy(conn, table, rows)
                counts[table] = counts.get(table, 0) + len(rows)
            progress(f"  {made:,} of {scale.usage:,} usage logs loaded")

        for table in COLUMNS:
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT max(id) FROM {table}), 1))"
            )
        return counts
    finally:
        await conn.close()


async def load_policy(url: str) -> str:
    """Publish catalog/policies/ as `facility-share policies import` does (or, where that
    module is absent, insert wuqing-default.toml's version directly); returns its name."""
    from pathlib import Path

    from facility_share.db import Database
    from facility_share.db.models import PolicyVersion
    from facility_share.finance.policy import load_policies

    folder = Path(__file__).resolve().parent.parent / "catalog" / "policies"
    loaded = [item for item in load_policies(folder) if item.code == "wuqing-default"]
    if not loaded:
        raise SystemExit(f"{folder}: no wuqing-default policy to settle under")
    db = Database(url, null_pool=True)
    try:
        async with db.session(write=True) as session:
            try:
                from facility_share.finance.policy_store import import_policies
            except ImportError:
                for item in loaded:
                    policy = item.policy
                    session.add(PolicyVersion(
                        code=policy.code, version=policy.version, title_zh=policy.title_zh, title_en=policy.title_en,
                        effective_from=policy.effective_from, effective_until=policy.effective_until, digest=item.digest,
                        document=policy.document(), source_file=item.source_file,
                    ))
            else:
                await import_policies(session, loaded)
            await session.commit()
    finally:
        await db.dispose()
    return ", ".join(f"{item.code}@{item.version}" for item in loaded)


async def vacuum_analyze(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
