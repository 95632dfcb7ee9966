"""The core of `raft/` is sans-IO (STYLE.md, "What this project should take", point 1; h11's
rule "no networking code at all"; etcd's `Step`/`Ready`): nothing in it imports an I/O or
concurrency library, reads a clock, or draws randomness of its own. Like trio's
`test_exports.py`, this is checked mechanically, twice: by what importing the modules pulls in
(`sys.modules`, in a fresh interpreter) and by what the source says (the AST).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE = ["raft.node", "raft.log", "raft.progress", "raft.messages", "raft.ready", "raft.config"]
FORBIDDEN = {"trio", "socket", "time", "lmdb", "asyncio", "threading"}
# `time` is loaded by the interpreter itself before any user code runs, so sys.modules cannot
# tell whether the core asked for it; the AST check below covers it.
FORBIDDEN_AT_RUNTIME = FORBIDDEN - {"time"}


def run_fresh(code: str, **env: str) -> str:
    """Run `code` in a new interpreter without site-packages' import side effects."""
    result = subprocess.run([sys.executable, "-S", "-E", "-c", code], cwd=REPO, capture_output=True,
                            text=True, check=True, env={**os.environ, **env}, timeout=60)
    return result.stdout


def test_importing_the_core_loads_no_io_or_concurrency_module() -> None:
    """Importing the core must not pull trio, socket, lmdb, asyncio or threading in, not even
    indirectly: `raft/__init__.py` rule 1.
    Reference: STYLE.md §2 (etcd-io/raft), "What this project should take" point 1"""
    code = (
        "import sys, json; sys.path.insert(0, '.');\n"
        f"import {', '.join(CORE)}\n"
        f"print(json.dumps(sorted(m for m in {sorted(FORBIDDEN_AT_RUNTIME)!r} if m in sys.modules)))"
    )
    assert json.loads(run_fresh(code)) == []


def core_trees() -> list[tuple[str, ast.Module]]:
    trees = []
    for module in CORE:
        path = REPO / (module.replace(".", "/") + ".py")
        trees.append((module, ast.parse(path.read_text(), filename=str(path))))
    return trees


@pytest.mark.parametrize("module, tree", core_trees(), ids=CORE)
def test_core_module_imports_nothing_forbidden(module: str, tree: ast.Module) -> None:
    """No `import time`, `from socket import ...`, `import trio.lowlevel` and the like, anywhere
    in the module (function-level imports included).
    Reference: STYLE.md §1 (h11), "What this project should take" point 1"""
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN, f"{module} imports {sorted(imported & FORBIDDEN)}"


@pytest.mark.parametrize("module, tree", core_trees(), ids=CORE)
def test_core_module_draws_no_module_level_randomness(module: str, tree: ast.Module) -> None:
    """Randomness comes only from the injected `random.Random`: the module may name the class
    (for a type hint) but never call `random.random()`, `random.uniform(...)`, `random.seed()`,
    nor import those functions by name.
    Reference: "What this project should take" point 3 (time and randomness are inputs)"""
    offences = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "random":
            offences += [f"from random import {a.name}" for a in node.names if a.name != "Random"]
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "random":
            if node.attr != "Random":
                offences.append(f"random.{node.attr} (line {node.lineno})")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if isinstance(node.func.value, ast.Name) and node.func.value.id == "random":
                offences.append(f"random.{node.func.attr}() called (line {node.lineno})")
    assert offences == [], f"{module}: {offences}"


def test_core_reads_no_clock_through_other_names() -> None:
    """Time arrives as `now`; nothing reaches a clock via `datetime.now()`, `os.times()` or
    `perf_counter`-style helpers either.
    Reference: "What this project should take" point 3"""
    clock_names = {"datetime", "perf_counter", "monotonic", "time_ns", "monotonic_ns", "sleep"}
    for module, tree in core_trees():
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert not (names | attrs) & clock_names, f"{module} mentions {sorted((names | attrs) & clock_names)}"


SCENARIO = """
import sys; sys.path.insert(0, 'tests/raft'); sys.path.insert(0, '.')
from harness import Network
net = Network(5, seed=3)
net.run(1000)
[leader] = net.leaders()
for k in range(3):
    net.nodes[leader].propose(b'x%d' % k)
net.isolate(leader)
net.run(1500)
net.heal()
net.run(500)
print(len(net.sent))
for m in net.sent:
    print(repr(m))
"""


def test_same_inputs_same_outputs_whatever_the_hash_seed() -> None:
    """"Time and randomness are inputs; the same inputs give the same outputs, byte for byte"
    (`raft/__init__.py` rule 2) — also across processes, where string hashing, and so the
    iteration order of any set of node ids, changes with PYTHONHASHSEED.
    Reference: STYLE.md §3 (one seed replays a run), "What this project should take" point 3"""
    traces = {seed: run_fresh(SCENARIO, PYTHONHASHSEED=str(seed)) for seed in (0, 1, 2, 3, 4, 5)}
    first = traces[0]
    assert int(first.split("\n", 1)[0]) > 100
    for seed, trace in traces.items():
        assert trace == first, f"PYTHONHASHSEED={seed} changed the messages"
