"""Running records: frozen results (results), `--max-cost` budgets (budget), one record through the
DAG (executor), many records on one loop (batch), input records read from files (inputs), and the
dry run (dryrun).

May import: runner.errors, runner.spec, runner.plan, runner.chat. Inside, one way:
results <- executor; inputs, results <- batch; budget <- executor, dryrun; inputs <- dryrun.
"""
