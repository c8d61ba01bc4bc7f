"""The pipeline file -> frozen values: safe YAML with line marks (yamlmarks), schema errors told in
plain words (explain), strict-mode rules and JSON type names (strict), the frozen values (model) and
their loading (load). No I/O beyond reading the pipeline's own files.

May import: runner.errors only. Inside, one way: yamlmarks, strict <- explain; yamlmarks <- model;
all of them <- load.
"""

from .load import load_spec
from .model import PipelineSpec, StepSpec

__all__ = ["PipelineSpec", "StepSpec", "load_spec"]
