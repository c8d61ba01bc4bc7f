"""Shared budgets: a run's `--max-cost` cap, its spend and the reservations in flight, held in the
database so every worker of a run draws on one figure. Mixed into Store."""

from __future__ import annotations


class Budgets:
    """Needs the Store's `_write`, `_db` and the ledger's `run_spend`."""

    def open_budget(self, run_id: str, max_cost_usd: float, *, fresh: bool) -> None:
        """The run's shared budget row; `fresh` (a resume) forgets reservations a killed worker left."""
        spent = self.run_spend(run_id)
        self._write(
            "INSERT INTO budgets (run_id, max_cost_usd, spent_usd, reserved_usd) VALUES (?, ?, ?, 0)"
            " ON CONFLICT (run_id) DO UPDATE SET max_cost_usd = excluded.max_cost_usd",
            (run_id, max_cost_usd, spent),
        )
        if fresh:
            self._write("UPDATE budgets SET spent_usd = ?, reserved_usd = 0 WHERE run_id = ?", (spent, run_id))

    def try_reserve(self, run_id: str, amount: float) -> tuple[bool, float, float]:
        """Atomically reserve `amount` if spend plus reservations stay within the cap: (reserved, spent, cap)."""
        changed = self._db.execute(
            "UPDATE budgets SET reserved_usd = reserved_usd + ?"
            " WHERE run_id = ? AND spent_usd + reserved_usd + ? <= max_cost_usd",
            (amount, run_id, amount),
        )
        spent, cap = self._db.one("SELECT spent_usd, max_cost_usd FROM budgets WHERE run_id = ?", (run_id,))
        return changed == 1, float(spent), float(cap)

    def settle_budget(self, run_id: str, reserved: float, actual: float) -> None:
        self._db.execute(
            "UPDATE budgets SET spent_usd = spent_usd + ?,"
            " reserved_usd = CASE WHEN reserved_usd > ? THEN reserved_usd - ? ELSE 0 END WHERE run_id = ?",
            (actual, reserved, reserved, run_id),
        )
