"""Pure planning, no I/O: Jinja references (refs), the step graph (graph, networkx kept inside), sandboxed
rendering (render, with the pipeline folder's shared pieces read once at load by includes), schema-valid
values chosen from a seed (synth, with schemaops and regexgen), which the dry run and the fake OpenRouter
share.

May import: runner.errors, runner.outcomes and runner.spec. Inside, one way: refs <- graph <- render;
includes <- render; regexgen, schemaops <- synth.
"""
