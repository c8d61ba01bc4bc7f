"""The package's layers (docs/architecture.md) checked on every import statement in runner/.

A module may import only its own layer and lower ones, and imports between modules never form a
cycle (so inside a subpackage they run one way too). Every module must belong to a layer: a new
top-level module or subpackage fails here until it is given one.
"""

import ast
from pathlib import Path

import runner

PACKAGE_ROOT = Path(runner.__file__).resolve().parent
MAX_LINES = 400

# Bottom to top. A module's layer is that of the longest entry naming it or a package above it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("runner.errors", "runner.outcomes"),
    ("runner.spec", "runner.chat.messages"),  # message values: rendering builds them, chat sends them
    ("runner.plan",),
    ("runner.chat",),
    ("runner.run",),
    ("runner.store",),
    (
        "runner",
        "runner.settings",
        "runner.session",
        "runner.api",
        "runner.cluster",
    ),  # the composition root; `runner`: the public API
    ("runner.report",),
    ("runner.check",),
    ("runner.fake",),
    ("runner.testing",),
    ("runner.cli", "runner.__main__"),
)
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}
TOP_LEVEL = {name for name in LAYER_OF if name.count(".") == 1}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(name: str) -> bool:
    return (PACKAGE_ROOT.parent / name.replace(".", "/") / "__init__.py").is_file()


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_ROOT.rglob("*.py"))}


def layer(name: str) -> int | None:
    """The layer of a module of ours; None when nothing assigns it one."""
    parts = name.split(".")
    if len(parts) == 2 and name not in TOP_LEVEL and not is_package(name):
        return None  # a new top-level module must be listed by name
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYER_OF and (end > 1 or len(parts) == 1):
            return LAYER_OF[prefix]
    return None


def imported_modules(name: str, path: Path, known: set[str], *, typing_only: bool = True) -> list[tuple[str, int]]:
    """Every module of ours this file imports (at the top or inside functions), with its line.

    `typing_only=False` leaves out imports under `if TYPE_CHECKING:`: they never run, so they
    cannot make a cycle, but they still count for the layers.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for statement in node.body
        for inner in ast.walk(statement)
    }
    found = []
    for node in ast.walk(tree):
        if not typing_only and id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == "runner"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "runner":
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.append((submodule if submodule in known else source, node.lineno))
    return found


def import_graph(*, typing_only: bool = True) -> dict[str, list[tuple[str, int]]]:
    found = modules()
    known = set(found)
    return {name: imported_modules(name, path, known, typing_only=typing_only) for name, path in found.items()}


def test_every_module_has_a_layer():
    unassigned = [name for name in modules() if layer(name) is None]
    assert not unassigned, f"modules with no layer (add them to LAYERS here and to docs/architecture.md): {unassigned}"


def test_no_import_goes_up_a_layer():
    problems = []
    for importer, imports in import_graph().items():
        for imported, line in imports:
            if layer(imported) is None:
                problems.append(f"{importer}:{line} imports {imported}, which is not a module of ours with a layer")
            elif layer(importer) is not None and layer(imported) > layer(importer):
                problems.append(
                    f"{importer}:{line} imports {imported}: layer {layer(importer)} ({LAYERS[layer(importer)][0]}) "
                    f"may import only layers 0-{layer(importer)}, and {imported} is in layer {layer(imported)} "
                    f"({LAYERS[layer(imported)][0]})"
                )
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


def test_imports_between_modules_run_one_way():
    """No cycles: inside a layer (and a subpackage) imports run one way too."""
    graph = {
        importer: {imported for imported, _ in imports if imported != importer and not _is_parent(imported, importer)}
        for importer, imports in import_graph(typing_only=False).items()
    }
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> list[str] | None:
        if name in visiting:
            return [*visiting[visiting.index(name) :], name]
        if name in done:
            return None
        visiting.append(name)
        for imported in sorted(graph.get(name, ())):
            cycle = visit(imported)
            if cycle:
                return cycle
        visiting.pop()
        done.add(name)
        return None

    for name in sorted(graph):
        cycle = visit(name)
        assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _is_parent(package: str, module: str) -> bool:
    """A package's __init__ re-exporting its own modules is not a cycle with them."""
    return module.startswith(package + ".")


def test_no_module_is_over_400_lines():
    long = {
        name: count
        for name, path in modules().items()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them by what they own): {long}"


def test_every_subpackage_says_what_it_owns_and_may_import():
    for name, path in modules().items():
        if path.name == "__init__.py" and name != "runner":
            docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
            assert "may import" in docstring.lower(), f"{path}: the docstring must say what it owns and may import"


def test_the_checker_catches_an_upward_import_and_an_unassigned_module(tmp_path):
    """The rules above can fail: an upward import and a new top-level module are both caught."""
    assert layer("runner.spec.load") < layer("runner.chat.client")
    assert layer("runner.newthing") is None
    assert layer("runner.run.steps.chat") == layer("runner.run")
    fake = tmp_path / "runner" / "spec"
    fake.mkdir(parents=True)
    source = fake / "load.py"
    source.write_text("from ..chat import client\n\ndef later():\n    from runner.cli.main import main\n")
    found = imported_modules("runner.spec.load", source, {"runner.chat.client"})
    assert found == [("runner.chat.client", 1), ("runner.cli.main", 4)]
    assert all(layer(imported) > layer("runner.spec.load") for imported, _ in found)
