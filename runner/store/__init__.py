"""Persistence: the two database backends (db), numbered migrations, process liveness, and the Store
composed from the cost ledger, shared budgets, response cache, run history, report queries and `--batch-api`'s batches.

May import: runner.errors, runner.outcomes and the layers below it (spec, plan, chat, run), nothing above. Inside:
db <- migrations; liveness; batches, cache, ledger, budgets, queries, runs (mixins, each on its own); all of them
<- store.
"""

from .store import Store

__all__ = ["Store"]
