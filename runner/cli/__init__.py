"""The `pipeline` command, one module per command: the group, logging and `main()` (main); run (with
dryrun and resume for its output), test, graph, models, validate, costs, runs (runs and show), cache
and db; domain errors worded with flags and turned into click exceptions (failures); the shared
--db options, store opening and durations (options); and where requests go, OpenRouter or the
--mock fake (connect), shared by run and test.

May import: every layer. Inside, one way: failures, options, connect, dryrun, resume <- each command <- main.
"""
