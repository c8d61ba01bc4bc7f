"""What users read: rows as an aligned table, CSV or JSON (tables), the progress bar (progress), the
DAG as Mermaid or dot (diagram), streamed text on stderr (textstream), OpenTelemetry spans (tracing,
imported only with the `otel` extra).

May import: runner.errors and the layers below the composition root (spec, plan, chat, run, store),
runner.api/session/settings; never check, fake, testing or cli.
"""
