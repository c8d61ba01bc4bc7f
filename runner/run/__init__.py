"""Running records: frozen results (results), the events a run announces (hooks), `--max-cost`
budgets (budget), step kinds' runners (steps/), `for_each` over any kind (fanout), the DAG walk of
one record (scheduler), one record through the pipeline (record), many records on one loop (batch),
where records run (backend), input records read from files (inputs), the dry run (dryrun),
streamed text steps and their events (streaming), and `--batch-api`: which steps may be batched
and custom ids (batch_values), a finished batch's billing (batch_billing), the collector (batching).

May import: runner.errors, runner.outcomes, runner.spec, runner.plan, runner.chat. Inside, one way:
results <- hooks <- streaming <- steps <- fanout <- record; results <- scheduler <- record <- backend;
inputs, results <- batch <- backend; budget <- steps, dryrun; inputs <- dryrun; batch_values, batch_billing,
budget <- batching <- steps.
"""
