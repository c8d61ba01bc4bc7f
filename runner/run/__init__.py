"""Running records: frozen results (results), the events a run announces (hooks), `--max-cost`
budgets (budget), step kinds' runners (steps/), `for_each` over any kind (fanout), the DAG walk of
one record (scheduler), one record through the pipeline (record), many records on one loop (batch),
where records run (backend), input records read from files (inputs), the dry run (dryrun), and
streamed text steps and their events (streaming).

May import: runner.errors, runner.outcomes, runner.spec, runner.plan, runner.chat. Inside, one way:
results <- hooks <- streaming <- steps <- fanout <- record; results <- scheduler <- record <- backend;
inputs, results <- batch <- backend; budget <- steps, dryrun; inputs <- dryrun.
"""
