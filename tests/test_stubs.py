"""The type stubs of the extension module (python/cimfs/_core.pyi) name exactly
what the module exports, so that a binding added or removed without its stub fails here."""

import ast
import pathlib

import cimfs
from cimfs import _core


def test_core_stub_matches_the_module():
    stub = pathlib.Path(cimfs.__file__).with_name("_core.pyi")
    tree = ast.parse(stub.read_text())
    declared = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    exported = {n for n in dir(_core) if not n.startswith("_")}
    assert exported - declared == set(), "exported but not in _core.pyi"
    assert declared - exported == set(), "in _core.pyi but not exported"
