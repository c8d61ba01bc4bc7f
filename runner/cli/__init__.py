"""The `pipeline` command, one module per command: the group, logging, `main()` and its one
`except PipelineError` (main); run (with dryrun and resume for its output), test, graph, models,
validate, costs, runs (runs and show), cache and db; the --db options and store opening of the
reporting commands (options); and where requests go, OpenRouter or the --mock fake (connect),
shared by run and test.

May import: every layer. Inside, one way: options, connect, dryrun, resume <- each command <- main.
"""
