"""The layers' rules, checked on the source: no import runs back up a layer, and every store
implements the store port the application declares (application/ports.py)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import notification_service
from notification_service.adapters.memory_store import MemoryStore, MemoryTx
from notification_service.adapters.store import PostgresStore, SQLiteStore, Tx
from notification_service.application.ports import PromptStore, StoreTransaction

PACKAGE = Path(notification_service.__file__).parent


def imports(layer: str) -> dict[str, set[str]]:
    """module file -> every module it imports (at the top or inside functions)."""
    found: dict[str, set[str]] = {}
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}: a relative import"  # so that the check below sees it
                names.add(node.module or "")
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(PACKAGE))] = names
    return found


def offenders(layer: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    return {module: sorted(n for n in names if n == forbidden or n.startswith(forbidden))
            for module, names in imports(layer).items() if any(n.startswith(forbidden) for n in names)}


def test_the_layers_are_found():
    assert "adapters/sources.py" in imports("adapters") and "application/service.py" in imports("application")


def test_adapters_do_not_import_the_application():
    assert offenders("adapters", ("notification_service.application",)) == {}


def test_the_application_imports_no_adapter_nor_anything_above_it():
    above = ("notification_service.adapters", "notification_service.api", "notification_service.web",
             "notification_service.bootstrap", "notification_service.config", "flask")
    assert offenders("application", above) == {}


def test_the_domain_imports_only_the_domain_the_contract_and_the_standard_library():
    outside = ("notification_service.application", "notification_service.adapters", "notification_service.api",
               "notification_service.web", "notification_service.bootstrap", "flask", "marshmallow", "sqlite3",
               "psycopg", "requests", "kafka")
    assert offenders("domain", outside) == {}


def _methods(protocol: type) -> list[str]:
    return [name for name, value in vars(protocol).items() if inspect.isfunction(value) and not name.startswith("_")]


@pytest.mark.parametrize("implementation", [Tx, MemoryTx])
def test_each_transaction_implements_every_method_of_the_port(implementation):
    assert len(_methods(StoreTransaction)) >= 28
    for name in _methods(StoreTransaction):
        declared = inspect.signature(getattr(StoreTransaction, name))
        implemented = inspect.signature(getattr(implementation, name))
        assert [(p.name, p.default) for p in implemented.parameters.values()] == [
            (p.name, p.default) for p in declared.parameters.values()], f"{implementation.__name__}.{name}"


@pytest.mark.parametrize("implementation", [SQLiteStore, PostgresStore, MemoryStore])
def test_each_store_implements_the_store_port(implementation):
    for name in _methods(PromptStore):
        assert callable(getattr(implementation, name, None)), f"{implementation.__name__}.{name}"
