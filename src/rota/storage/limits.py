"""Rate-limit state shared by every worker through the store, mixed into SqlStore.

Each limited resource (e.g. requests, or tokens, of one provider model) keeps one number:
its GCRA "theoretical arrival time" (tat). A call reserves its turn: it may start once the
debt already owed (tat - now) is within the burst allowance, and its cost x interval is
added from that start. Several resources are reserved together, in one transaction, so a
call starts when all of them have room.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .connection import SqlBase
from .dialects import Connection


@dataclass(frozen=True)
class Charge:
    """Charge `cost` units of a resource that renews `interval_s` seconds per unit, with a
    burst allowance of `burst_s` seconds' worth."""

    interval_s: float
    cost: float
    burst_s: float

    @property
    def debt_s(self) -> float:
        return self.interval_s * self.cost


class LimitQueries(SqlBase):
    def take(self, charges: Mapping[str, Charge], now: float) -> float:
        """Reserve the call's turn on every resource and return how long to wait for it
        (0: go now). One transaction per call, however busy: waiters never poll."""
        keys = sorted(charges)
        with self.tx() as conn:
            tats = self._locked_tats(conn, keys, now)
            start, new = reserve(tats, charges, now)
            for key in keys:
                conn.execute(
                    "UPDATE rota_rate_limits SET tat = :tat WHERE key = :key",
                    {"tat": new[key], "key": key},
                )
        return start - now

    def take_many(self, takes: Sequence[tuple[Mapping[str, Charge], float]]) -> list[float]:
        """`take` for several calls (charges, now) in one transaction, in order: each is
        reserved after the ones before it, exactly as if taken one by one."""
        keys = sorted({key for charges, _ in takes for key in charges})
        waits = []
        with self.tx() as conn:
            tats = self._locked_tats(conn, keys, min(now for _, now in takes))
            for charges, now in takes:
                start, new = reserve(tats, charges, now)
                tats.update(new)
                waits.append(start - now)
            for key in keys:
                conn.execute(
                    "UPDATE rota_rate_limits SET tat = :tat WHERE key = :key",
                    {"tat": tats[key], "key": key},
                )
        return waits

    def adjust(self, key: str, seconds: float, now: float) -> None:
        """Correct a charge once the real cost is known (e.g. tokens actually used)."""
        with self.tx() as conn:
            self._locked_tats(conn, [key], now)
            conn.execute(
                "UPDATE rota_rate_limits SET tat = CASE WHEN tat + :s < :now THEN :now "
                "ELSE tat + :s END WHERE key = :key",
                {"s": seconds, "now": now, "key": key},
            )

    def _locked_tats(self, conn: Connection, keys: list[str], now: float) -> dict[str, float]:
        conn.execute_many(
            "INSERT INTO rota_rate_limits (key, tat) VALUES (:key, :now) "
            "ON CONFLICT (key) DO NOTHING",
            [{"key": k, "now": now} for k in keys],
        )
        d = self.dialect
        rows = conn.execute(
            f"""SELECT key, tat FROM rota_rate_limits WHERE {d.any_of("key", "keys")}
            ORDER BY key {d.row_lock}""",
            {"keys": d.list_param(keys)},
        )
        return {r["key"]: float(r["tat"]) for r in rows}


def reserve(
    tats: Mapping[str, float], charges: Mapping[str, Charge], now: float
) -> tuple[float, dict[str, float]]:
    """GCRA with reservation: the call may start once every resource's debt is within its
    burst allowance; each resource is then charged from that start. Returns the start and
    the new tats. A call's own cost is added after its start, so one large call is never
    held back on an idle limit."""
    start = max([now] + [tats.get(k, now) - c.burst_s for k, c in charges.items()])
    return start, {k: max(tats.get(k, now), start) + c.debt_s for k, c in charges.items()}
