"""The people of the settled portfolio (testkit.settled), by index: resellers and their
account managers, customers and their admins; the views of them that
`worker.passes.effects.deliveries` reads; and the notices they were already sent
(`History`), written as sent by the previous pass."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from testkit.portfolios import RESELLER_ZONES, Plan, Row, Zone, customer_id, reseller_id
from worker.passes.effects import deliveries
from worker.rules.model import Notice


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class ResellerView:
    """Enough of worker.passes.snapshots.ResellerInfo for `deliveries`."""

    id: str
    name: str
    email: str
    locale: str
    timezone: str
    managers: dict[str, Person]


@dataclass(frozen=True, slots=True)
class CustomerView:
    admins: tuple[Person, ...]
    locale: str
    zone: ZoneInfo
    managed_by: str | None


def manager_rows(index: int) -> list[Row]:
    rid = reseller_id(index)
    return [{"id": f"{rid}-AM{k}", "name": f"Manager {k} of {rid}",
             "email": f"am{k}@{rid.lower()}.example"} for k in range(3)]


def reseller_view(index: int) -> ResellerView:
    rid = reseller_id(index)
    managers = {m["id"]: Person(m["name"], m["email"]) for m in manager_rows(index)}
    return ResellerView(rid, f"Reseller {rid}", f"ops@{rid.lower()}.example",
                         "fr" if index % 2 else "en", RESELLER_ZONES[index % len(RESELLER_ZONES)],
                         managers)


def admin_rows(index: int) -> list[Row]:
    cid = customer_id(index)
    return [{"name": f"Admin {k} of {cid}", "email": f"admin{k}@{cid.lower()}.example"}
            for k in range(1 + index % 2)]


def manager_of(index: int, reseller: int) -> str | None:
    return None if index % 4 == 0 else f"{reseller_id(reseller)}-AM{index % 3}"


def customer_view(index: int, reseller: int, zone: Zone) -> CustomerView:
    admins = tuple(Person(a["name"], a["email"]) for a in admin_rows(index))
    return CustomerView(admins, "fr" if index % 2 else "en", zone.zone,
                         manager_of(index, reseller))


# --- the notices the previous passes sent them ---------------------------------------


class History:
    """Notices of the settled state, written as already sent."""

    def __init__(self, plan: Plan, resellers: list[ResellerView]) -> None:
        self.plan = plan
        self.resellers = resellers
        self.rows: list[Row] = []

    def add(self, notice: Notice, ref: str, customer: CustomerView, reseller: int) -> None:
        view = self.resellers[reseller]
        for delivery in deliveries(notice.kind, customer, view):  # type: ignore[arg-type]
            sent = self.plan.settled_at
            self.rows.append({
                "kind": notice.kind, "ref": ref, "occasion": notice.occasion,
                "audience": delivery.audience, "occasion_date": notice.occasion_date,
                "reseller_id": view.id, "recipients": list(delivery.recipients),
                "locale": delivery.locale, "timezone": delivery.timezone, "payload": {},
                "status": "sent", "created_at": sent, "pass_id": None, "not_before": None,
                "attempts": 1, "last_error": None, "sent_at": sent,
                "message_id": f"<{notice.kind}.{ref}.{len(self.rows)}@bench.example>",
            })

    def take(self) -> list[Row]:
        rows, self.rows = self.rows, []
        return rows
