"""`pipeline validate`'s rules beyond loading (rules): models, limits, reasoning, impossible `when`,
dead outputs, inputs, fields of skippable steps, attachments' modalities; code steps' modules, functions
and arguments, read from their source (calls); OpenRouter's settings (settings_rules); the findings
they give (findings).

May import: every layer up to runner.report (spec, plan, chat, run, store, the composition root,
report); never fake, testing or cli.
"""
