"""`pipeline validate`'s rules beyond loading (rules): models, limits, reasoning, impossible `when`,
dead outputs, inputs, fields of skippable steps; code steps' modules, functions and arguments, read from
their source (calls).

May import: every layer up to runner.report (spec, plan, chat, run, store, the composition root,
report); never fake, testing or cli.
"""
