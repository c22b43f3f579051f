"""
Sphinx helpers for the Octopods provider's documentation: facts are read from the code, never retyped.

Directives:

- ``optional-toctree``: a ``toctree`` that leaves out the entries whose page is not part of the
  build (see ``OPTIONAL_PAGES`` in ``conf.py``), so a page still being written never breaks it.
- ``optional-figure``: a ``figure`` shown only once its image file exists.
- ``octopods-connection-form``: the connection form's fields, from ``get_provider_info()``.
- ``octopods-requirements``: the runtime requirements, from ``pyproject.toml``.
- ``octopods-tested-versions``: the pinned version sets the tests run on, from ``constraints/``.
- ``octopods-simulator-numbers``: the simulator's magic phone-number suffixes.

Substitutions (added to ``rst_epilog``): ``|default-initial-delay|``, ``|default-poll-interval|``,
``|default-backoff-factor|``, ``|default-max-poll-interval|``, ``|default-max-concurrency|`` and
``|retry-after-cap|`` are the wait's defaults from the code; ``|form-<field>|`` is the bold label the connection form
shows for ``<field>`` (``host``, ``password``, ``extra``, and each extra field such as
``timeout``), and ``|conn-type|`` is the connection type's name in the form's drop-down.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from docutils.parsers.rst import directives
from sphinx.directives.other import TocTree
from sphinx.util import docname_join
from sphinx.util.docutils import SphinxDirective

if TYPE_CHECKING:
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.application import Sphinx
    from sphinx.config import Config

ROOT = Path(__file__).resolve().parents[2]
CONN_TYPE = "octopods"
#: Airflow's own labels of the standard connection fields.
STANDARD_LABELS = {
    "host": "Host",
    "schema": "Schema",
    "login": "Login",
    "password": "Password",
    "port": "Port",
    "extra": "Extra",
}
#: Airflow packages whose pinned versions the tested-versions table shows, with their column titles.
TESTED_PACKAGES = {
    "apache-airflow": "Airflow",
    "apache-airflow-providers-http": "HTTP provider",
    "apache-airflow-providers-common-compat": "common-compat provider",
}


def _connection_type() -> dict[str, Any]:
    from airflow_provider_octopods.get_provider_info import get_provider_info

    for entry in get_provider_info()["connection-types"]:
        if entry["connection-type"] == CONN_TYPE:
            return dict(entry)
    raise RuntimeError(f"get_provider_info() declares no '{CONN_TYPE}' connection type")


def _literal(text: str) -> str:
    return f"``{text}``" if text else ""


def _strong(text: str) -> str:
    return "**" + text.replace("\\", "\\\\").replace("*", "\\*") + "**"


def _list_table(header: list[str], rows: list[list[str]], widths: str = "auto") -> str:
    lines = [".. list-table::", "    :header-rows: 1", f"    :widths: {widths}", ""]
    for row in [header, *rows]:
        lines.append(f"    * - {row[0] or ' '}")
        lines.extend(f"      - {cell or ' '}" for cell in row[1:])
    return "\n".join(lines) + "\n"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            pins[_canonical(name)] = version.strip()
    return pins


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


class _GeneratedTable(SphinxDirective):
    """Base of the directives that render a table built from the code."""

    has_content = False

    #: Files the table is read from, relative to the repository root (rebuild when they change).
    sources: tuple[str, ...] = ()

    def table(self) -> str:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        for source in self.sources:
            for path in sorted(ROOT.glob(source)):
                self.env.note_dependency(str(path))
        return self.parse_text_to_nodes(self.table())


class ConnectionFormTable(_GeneratedTable):
    """The connection form's visible fields, labels and placeholders, then the hidden ones."""

    sources = ("airflow_provider_octopods/get_provider_info.py",)

    def table(self) -> str:
        conn = _connection_type()
        behaviour = conn.get("ui-field-behaviour", {})
        hidden = behaviour.get("hidden-fields", [])
        relabeling = behaviour.get("relabeling", {})
        placeholders = behaviour.get("placeholders", {})
        rows = [
            [_strong(relabeling.get(field, label)), _literal(field), _literal(placeholders.get(field, ""))]
            for field, label in STANDARD_LABELS.items()
            if field not in hidden
        ]
        for name, spec in conn.get("conn-fields", {}).items():
            kind = spec.get("schema", {}).get("type", "")
            kinds = [k for k in (kind if isinstance(kind, list) else [kind]) if k and k != "null"]
            rows.append(
                [
                    _strong(spec.get("label", name)),
                    f"extra ``{name}`` ({', '.join(kinds) or 'value'})",
                    spec.get("description", ""),
                ]
            )
        text = _list_table(["Field in the form", "Stored as", "Placeholder or help text"], rows, "30 25 45")
        if hidden:
            names = ", ".join(STANDARD_LABELS.get(field, field) for field in hidden)
            text += f"\nThe form hides the fields this connection does not use: {names}.\n"
        return text


class RequirementsTable(_GeneratedTable):
    """The runtime requirements of the distribution, as ``pyproject.toml`` declares them."""

    sources = ("pyproject.toml",)

    def table(self) -> str:
        project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        rows = [["Python", _literal(project["requires-python"])]]
        for requirement in project["dependencies"]:
            match = re.match(r"\s*([A-Za-z0-9._-]+)\s*(.*)", requirement)
            if match:
                rows.append([_literal(match[1]), _literal(match[2].strip())])
        return _list_table(["Package", "Version required"], rows, "60 40")


class TestedVersionsTable(_GeneratedTable):
    """One row per constraints file: the Airflow versions the test suite pins."""

    sources = ("constraints/*.txt",)

    def table(self) -> str:
        rows = []
        for path in (ROOT / "constraints").glob("*.txt"):
            pins = _pins(path)
            if "apache-airflow" in pins:
                rows.append([pins.get(package, "") for package in TESTED_PACKAGES] + [path.name])
        if not rows:
            raise self.error("no constraints/*.txt file pins apache-airflow")
        rows.sort(key=lambda row: _version_key(row[0]), reverse=True)
        cells = [[_literal(cell) for cell in row[:-1]] + [f"``constraints/{row[-1]}``"] for row in rows]
        return _list_table([*TESTED_PACKAGES.values(), "Constraints file"], cells)


class SimulatorNumbersTable(_GeneratedTable):
    """What happens to an SMS sent to the simulator, by the last digits of the phone number."""

    sources = ("airflow_provider_octopods/testing/simulator.py",)

    def table(self) -> str:
        from airflow_provider_octopods.testing.simulator import MAGIC_NUMBERS, Reply, Status

        rows = []
        for suffix, fate in MAGIC_NUMBERS.items():
            if isinstance(fate, Status) and fate.status == "queued":
                what = "stays ``queued`` for ever (to test timeouts)"
            elif isinstance(fate, Status):
                what = f"``{fate.status}``, ``failure_reason``: *{fate.failure_reason}*"
            elif isinstance(fate, Reply):
                body = fate.body if isinstance(fate.body, dict) else {}
                code = f", ``error_code`` {body['error_code']}" if "error_code" in body else ""
                what = f"the send is refused: HTTP {fate.status}{code}"
            else:
                what = repr(fate)
            rows.append([f"``...{suffix}``", what])
        rows.append(["any other number", "``queued``, then ``sent``, then ``delivered``"])
        return _list_table(["Destination number ends in", "What the simulator does"], rows, "30 70")


class OptionalTocTree(TocTree):
    """A ``toctree`` whose entries for pages left out of the build are dropped, not warned about."""

    def run(self) -> list[nodes.Node]:
        content: StringList = self.content  # type: ignore[has-type]  # docutils has no annotations
        kept = [i for i, line in enumerate(content.data) if self._wanted(line.strip())]
        if not any(content.data[i].strip() for i in kept):
            return []
        content.data = [content.data[i] for i in kept]
        content.items = [content.items[i] for i in kept]
        return super().run()

    def _wanted(self, entry: str) -> bool:
        """Keep blank lines, external links and entries whose page is part of the build."""
        target = re.fullmatch(r".*<(.+)>", entry)
        docname = (target[1] if target else entry).strip()
        return not entry or "://" in docname or self._known(docname)

    def _known(self, docname: str) -> bool:
        if docname == "self":
            return True
        return docname_join(self.env.docname, docname) in self.env.found_docs


class OptionalFigure(SphinxDirective):
    """A ``figure`` (same argument, options and caption) shown only once its image file exists."""

    required_arguments = 1
    has_content = True
    option_spec = {"alt": directives.unchanged, "width": directives.unchanged, "class": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        _, path = self.env.relfn2path(self.arguments[0], self.env.docname)
        if not Path(path).is_file():
            return []
        lines = [f".. figure:: {self.arguments[0]}"]
        lines += [f"    :{name}: {value}" for name, value in self.options.items()]
        lines += [""] + [f"    {line}" for line in self.content]
        return self.parse_text_to_nodes("\n".join(lines) + "\n")


def _schedule_numbers() -> dict[str, float]:
    """The wait's defaults, as the code states them once (``|default-initial-delay|`` and so on)."""
    from airflow_provider_octopods.triggers import octopods as wait
    from airflow_provider_octopods.utils import budget

    return {
        "default-initial-delay": wait.DEFAULT_INITIAL_DELAY,
        "default-poll-interval": wait.DEFAULT_POLL_INTERVAL,
        "default-backoff-factor": wait.DEFAULT_BACKOFF_FACTOR,
        "default-max-poll-interval": wait.DEFAULT_MAX_POLL_INTERVAL,
        "default-max-concurrency": wait.DEFAULT_MAX_CONCURRENCY,
        "retry-after-cap": budget.BACKOFF_CAP,
    }


def _add_substitutions(app: Sphinx, config: Config) -> None:
    """Define ``|form-<field>|`` and ``|conn-type|`` from ``get_provider_info()``."""
    conn = _connection_type()
    relabeling = conn.get("ui-field-behaviour", {}).get("relabeling", {})
    labels = {field: relabeling.get(field, label) for field, label in STANDARD_LABELS.items()}
    labels.update({name: spec.get("label", name) for name, spec in conn.get("conn-fields", {}).items()})
    lines = [f".. |form-{field}| replace:: {_strong(label)}" for field, label in labels.items()]
    lines.append(f".. |conn-type| replace:: {_strong(conn['hook-name'])}")
    lines += [f".. |{name}| replace:: {value:g}" for name, value in _schedule_numbers().items()]
    config.rst_epilog = (config.rst_epilog or "") + "\n" + "\n".join(lines) + "\n"


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("optional-toctree", OptionalTocTree)
    app.add_directive("optional-figure", OptionalFigure)
    app.add_directive("octopods-connection-form", ConnectionFormTable)
    app.add_directive("octopods-requirements", RequirementsTable)
    app.add_directive("octopods-tested-versions", TestedVersionsTable)
    app.add_directive("octopods-simulator-numbers", SimulatorNumbersTable)
    app.connect("config-inited", _add_substitutions)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
