"""The `pipeline` command, one module per command: the group, `main()` and the one
`except PipelineError` (main), run (run, with dryrun_output and resume), test and graph (test, graph),
models, validate, costs, runs and show (runs), cache, db; options shared by several commands and the
connection to OpenRouter or the fake (options).

May import: every layer. Inside, one way: options <- each command <- main.
"""
