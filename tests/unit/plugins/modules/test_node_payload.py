"""What the node module carries to every node. AnsiballZ ships a module with every
module_utils file it might import - also the ones imported inside a function - and every node
run unzips and compiles what it imports; the node module must never carry the CA's state,
ledger, rotation or PKCS#11 code (bench/README.md measured 683 KiB and 0.24 s of AnsiballZ
CPU per run with them, 598 KiB and 0.18 s without)."""

from __future__ import annotations

import ast
import os

import pytest

from ansible_collections.trustzone.pki.plugins.modules import node as node_module

PLUGINS = os.path.dirname(os.path.dirname(os.path.abspath(node_module.__file__)))
PREFIX = "ansible_collections.trustzone.pki.plugins.module_utils"
CA_SIDE = {"_ca", "_ca_metrics", "_catree", "_ledger", "_pkcs11", "_rotation", "_rootplan",
           "_revocation", "_signing", "_archive", "_offline", "_secrets"}


def imported_utils(path):
    """The collection's module_utils ``path`` imports anywhere in it (also in functions)."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == PREFIX:
                found.update(alias.name for alias in node.names)
            elif node.module.startswith(PREFIX + "."):
                found.add(node.module[len(PREFIX) + 1:].split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(a.name[len(PREFIX) + 1:].split(".")[0] for a in node.names
                         if a.name.startswith(PREFIX + "."))
    return found


def payload(module):
    """Every module_utils the module reaches, as AnsiballZ's finder follows them."""
    todo = list(imported_utils(os.path.join(PLUGINS, "modules", module + ".py")))
    seen = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(imported_utils(os.path.join(PLUGINS, "module_utils", name + ".py")))
    return seen


def test_the_finder_follows_imports_made_inside_functions():
    # zone_root reaches the ledger only through a function-level import chain of its own
    assert {"_ca", "_ledger", "_pkcs11", "_ca_metrics"} <= payload("zone_root")


@pytest.mark.parametrize("module", ["node"])
def test_a_node_module_carries_no_ca_side_code(module):
    assert payload(module) & CA_SIDE == set()
