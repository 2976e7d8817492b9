"""Rate-limit state shared by every worker through the store, mixed into SqlStore.

Each limited resource (e.g. requests, or tokens, of one provider model) keeps one number:
its GCRA "theoretical arrival time" (tat). Admitting a cost moves tat forward by
cost x interval; a call is admitted while tat - now is within the burst allowance.
Several resources are checked and charged together, in one transaction, so a call is
admitted only when all of them have room, and nothing is charged otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .dialects import Connection, Dialect


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


class LimitQueries:
    dialect: Dialect

    def tx(self) -> Any:
        raise NotImplementedError  # provided by SqlStore

    def take(self, charges: Mapping[str, Charge], now: float) -> float:
        """Charge every resource if all have room; return 0. Otherwise charge nothing and
        return how long to wait before trying again."""
        keys = sorted(charges)
        with self.tx() as conn:
            tats = self._locked_tats(conn, keys, now)
            # Admitted while the debt already owed is within the burst allowance; the call's
            # own cost is added after, so one large call is never refused on an idle limit.
            wait = max(max(tats[k], now) - now - charges[k].burst_s for k in keys)
            if wait > 0:
                return wait
            for key in keys:
                conn.execute(
                    "UPDATE rota_rate_limits SET tat = :tat WHERE key = :key",
                    {"tat": max(tats[key], now) + charges[key].debt_s, "key": key},
                )
        return 0.0

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
