"""No import cycles in the service's packages, counting the imports that hide circles: those inside functions
and under TYPE_CHECKING (grimp, import-linter's graph library, records both).

Which way the packages may import (dataflow never into connectors or tracejudge...) is import-linter's job:
the contracts in pyproject.toml, checked by `lint-imports` in `make test`.
"""

from __future__ import annotations

import graphlib
from pathlib import Path

import grimp
import pytest

PACKAGES = ("dataflow", "connectors", "tracejudge")


def import_cycle(graph: grimp.ImportGraph) -> list[str]:
    """One cycle of modules importing each other (first module repeated at the end); [] when there is none."""
    imports = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    try:
        graphlib.TopologicalSorter(imports).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return []


def test_the_packages_have_no_import_cycle() -> None:
    cycle = import_cycle(grimp.build_graph(*PACKAGES, cache_dir=None))
    assert not cycle, "import cycle: " + " -> ".join(reversed(cycle))


@pytest.mark.parametrize(
    "hidden",
    ["def make() -> object:\n    from circle import client\n\n    return client\n",
     "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from circle import client\n"],
    ids=["in-a-function", "under-type-checking"],
)  # fmt: skip
def test_a_hidden_cycle_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hidden: str) -> None:
    """The circles this test was written against: a client imports the factory's helpers, while the factory
    imports the client inside a function (or only for type checking)."""
    circle = tmp_path / "circle"
    circle.mkdir()
    (circle / "__init__.py").write_text("")
    (circle / "client.py").write_text("from circle.factory import helper\n")
    (circle / "factory.py").write_text("helper = 1\n\n\n" + hidden)
    monkeypatch.syspath_prepend(str(tmp_path))
    cycle = import_cycle(grimp.build_graph("circle", cache_dir=None))
    assert set(cycle) == {"circle.client", "circle.factory"} and cycle[0] == cycle[-1]
