"""The documented settings are the code's settings: docs/deploy.md's tables (and README's short
one) against the settings classes, names and defaults, so a field added, removed or re-defaulted
without its doc fails here.

The tables follow one convention, which these tests also enforce:

* a table follows a line naming its class as ``[`ClassName`](...)``; the common table lists
  ``CommonSettings``'s fields, each service's table the fields its class adds or redefines;
* one variable per row, in backticks, in the first column;
* the default column starts with ``required`` (no default), ``unset`` (default None; what that
  means may follow), ``<repo>/...`` in backticks (a path in the repository), or the default value
  itself in backticks (``0.9``, ``true``, ``INFO``, ``15728640``); prose may follow.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic.fields import FieldInfo

from services.hedger.config import HedgerSettings
from shared.config import REPO_ROOT, CommonSettings, env_name

DOCS = REPO_ROOT / "docs" / "deploy.md"
README = REPO_ROOT / "README.md"


def settings_classes() -> list[type[CommonSettings]]:
    """CommonSettings and every settings class of a ``services/<name>/config.py``: found, not
    listed, so a new service's settings cannot be left out of these checks."""
    found: list[type[CommonSettings]] = [CommonSettings]
    for path in sorted((REPO_ROOT / "services").glob("*/config.py")):
        module = importlib.import_module(f"services.{path.parent.name}.config")
        found += [obj for obj in vars(module).values() if isinstance(obj, type) and issubclass(obj, CommonSettings)
                  and obj.__module__ == module.__name__]
    return found


CLASSES = settings_classes()


def tables(text: str) -> dict[str, dict[str, str]]:
    """Class name -> {VARIABLE: default cell} of the table that follows the line naming it."""
    out: dict[str, dict[str, str]] = {}
    owner: str | None = None
    in_table = False
    for line in text.splitlines():
        if not line.startswith("|"):
            named = re.findall(r"\[`(\w+Settings)`\]", line)
            if named:
                owner = named[0]
            elif in_table or line.startswith("#"):  # a table or a section ends its owner's scope
                owner = None
            in_table = False
            continue
        in_table = True
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        var = re.fullmatch(r"`([A-Z][A-Z0-9_]*)`", cells[0])
        if owner is None or var is None:
            continue
        assert var.group(1) not in out.setdefault(owner, {}), f"{owner}: {var.group(1)} documented twice"
        out[owner][var.group(1)] = cells[1]
    return out


def own_fields(cls: type[CommonSettings]) -> dict[str, FieldInfo]:
    """The fields ``cls`` adds to, or redefines from, CommonSettings (all of them for CommonSettings)."""
    if cls is CommonSettings:
        return dict(cls.model_fields)
    common = CommonSettings.model_fields
    return {name: f for name, f in cls.model_fields.items()
            if name not in common or repr(f) != repr(common[name])}


def check_default(where: str, field: FieldInfo, cell: str) -> None:
    if field.is_required():
        assert cell.startswith("required"), f"{where}: required, documented as {cell!r}"
        return
    default: Any = field.get_default(call_default_factory=True)
    if default is None:
        assert cell.startswith("unset"), f"{where}: defaults to unset (None), documented as {cell!r}"
        return
    literal = re.match(r"`([^`]*)`", cell)
    assert literal, f"{where}: the default cell must start with the value in backticks: {cell!r}"
    documented = literal.group(1)
    if isinstance(default, Path) and default.is_relative_to(REPO_ROOT):
        expected = f"<repo>/{default.relative_to(REPO_ROOT)}"
        assert documented == expected, f"{where}: default {expected}, documented {documented}"
    elif isinstance(default, bool):
        assert documented == str(default).lower(), f"{where}: default {default}, documented {documented}"
    elif isinstance(default, (int, float)):
        assert float(documented) == float(default), f"{where}: default {default}, documented {documented}"
    else:
        assert documented == str(default), f"{where}: default {default!r}, documented {documented!r}"


@pytest.fixture(scope="module")
def documented() -> dict[str, dict[str, str]]:
    return tables(DOCS.read_text())


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_each_settings_class_has_its_table(cls: type[CommonSettings], documented) -> None:
    assert cls.__name__ in documented, f"docs/deploy.md has no table after a line naming [`{cls.__name__}`]"
    expected = {env_name(name) for name in own_fields(cls)}
    found = set(documented[cls.__name__])
    assert not expected - found, f"{cls.__name__}: undocumented {sorted(expected - found)}"
    assert not found - expected, (
        f"{cls.__name__}: documented but not its own fields {sorted(found - expected)} "
        "(removed? or inherited unchanged from CommonSettings, whose table has it)")


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_documented_defaults_are_the_code_defaults(cls: type[CommonSettings], documented) -> None:
    for name, field in own_fields(cls).items():
        check_default(f"docs/deploy.md {cls.__name__} {env_name(name)}", field,
                      documented[cls.__name__][env_name(name)])


def test_readme_configuration_table_agrees_with_the_code() -> None:
    """README's short table ("the common ones"): every name is a field, with the code's default."""
    text = README.read_text()
    section = text[text.index("## Configuration"):]
    section = section[:section.index("\n## ", 1)]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| `")]
    assert len(rows) >= 5, "README's configuration table went missing"
    for cells in rows:
        name = re.fullmatch(r"`([A-Z][A-Z0-9_]*)`", cells[0])
        assert name, f"README: one variable per row: {cells[0]}"
        owners = [c for c in CLASSES if name.group(1).lower() in c.model_fields]
        assert owners, f"README documents {name.group(1)}, which no settings class has"
        owner = owners[0] if owners[0] is CommonSettings else next(
            c for c in owners if name.group(1).lower() in own_fields(c))
        check_default(f"README {name.group(1)}", owner.model_fields[name.group(1).lower()], cells[1])


def test_every_service_has_settings() -> None:
    names = {c.__name__ for c in CLASSES}
    assert {"GatewaySettings", "InferenceSettings", "HedgerSettings", "TrainerSettings"} <= names, names


def test_the_table_reader_catches_drift() -> None:
    """The checks above can fail: a stale row and a wrong default are caught."""
    stale = "Hedger ([`HedgerSettings`](x)):\n\n| variable | default |\n|---|---|\n| `THREADS` | `2` |\n"
    assert tables(stale) == {"HedgerSettings": {"THREADS": "`2`"}}
    with pytest.raises(AssertionError, match="default 5, documented 6"):
        check_default("TOP_K", HedgerSettings.model_fields["top_k"], "`6`")
    with pytest.raises(AssertionError, match="required"):
        check_default("REDIS_URL", HedgerSettings.model_fields["redis_url"], "unset")
