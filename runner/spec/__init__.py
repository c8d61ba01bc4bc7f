"""The pipeline file -> frozen values: safe YAML with line marks (yamlmarks), schema errors told in
plain words (explain), strict-mode rules and JSON type names (strict), the frozen values (model) and
their loading (load). No I/O beyond reading the pipeline's own files and the source of the Python
modules it names (pymodules: found next to the pipeline file or on sys.path and read with ast for loading,
code steps, tools and `pipeline validate`; imported only by a run).

Steps are a small family of kinds (kinds: how a kind is recognised, its schema, its builder); the
built-in kinds' own reading is in chat (`prompt`; its tools' in tools, schemas from signatures:
signature) and code (`call`); both read an output `schema` with stepschema.

May import: runner.errors and runner.outcomes only. Inside, one way: yamlmarks, strict <- explain; yamlmarks <- model;
model <- kinds <- stepschema <- chat, code; pymodules <- signature <- tools <- chat; pymodules <- code;
all of them <- load.
"""

from .load import load_spec
from .model import ChatStep, PipelineSpec, StepBase

__all__ = ["ChatStep", "PipelineSpec", "StepBase", "load_spec"]
