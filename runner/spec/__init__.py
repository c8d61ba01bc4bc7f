"""The pipeline file -> frozen values: safe YAML with line marks (yamlmarks), schema errors told in
plain words (explain), strict-mode rules and JSON type names (strict), the frozen values (model) and
their loading (load). No I/O beyond reading the pipeline's own files and the source of the Python
modules it names (pymodules; read with ast, imported only by a run).

Steps are a small family of kinds (kinds: how a kind is recognised, its schema, its builder); the
built-in kinds' own reading is in chat (`prompt`; its tools' in tools, schemas from signatures:
signature) and code (`call`).

May import: runner.errors and runner.outcomes only. Inside, one way: yamlmarks, strict <- explain; yamlmarks <- model;
model <- kinds <- chat, code; pymodules, signature <- tools <- chat; all of them <- load.
"""

from .load import load_spec
from .model import ChatStep, PipelineSpec, StepBase

__all__ = ["ChatStep", "PipelineSpec", "StepBase", "load_spec"]
