#!/usr/bin/env python3
"""Refuses module dependency cycles inside each crate of the workspace.

A module depends on another when its code (comments and unit tests left out) names it: through
`crate::a::b`, `super::…`, or a child module's name. Cycles between sibling or unrelated modules
are refused (`statement.rs` <-> `procedure.rs` was one); a child using its parent's types is how
Rust modules are built and is not counted. Exit status 1 lists each cycle.

    python3 tests/module_cycles.py [workspace root]
"""

import os
import re
import sys

UNIT_TESTS = re.compile(r"#\[cfg\(test\)\]\s*mod tests\s*\{.*", re.S)
COMMENT = re.compile(r"//[^\n]*")
PATH = re.compile(r"\b((?:crate|super)(?:::(?:super|\w+))+)")
CHILD = re.compile(r"(?<![:\w])(\w+)::")


def module_path(src: str, path: str) -> tuple:
    parts = os.path.relpath(path, src)[: -len(".rs")].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def dependencies(src: str) -> dict:
    files = {}
    for directory, _, names in os.walk(src):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(directory, name)
                files[module_path(src, path)] = path
    graph = {module: set() for module in files}
    for module, path in files.items():
        with open(path, encoding="utf-8") as f:
            text = COMMENT.sub("", UNIT_TESTS.sub("", f.read()))
        for reference in PATH.findall(text):
            parts = reference.split("::")
            if parts[0] == "crate":
                base, parts = (), parts[1:]
            else:
                base, parts = module[:-1], parts[1:]
                while parts and parts[0] == "super":
                    base, parts = base[:-1], parts[1:]
            target = base
            for part in parts:
                if target + (part,) not in files:
                    break
                target += (part,)
            graph[module].add(target)
        for name in CHILD.findall(text):
            if module + (name,) in files:
                graph[module].add(module + (name,))
    # A module naming itself or one of its ancestors is not a dependency that can close a cycle.
    return {m: {t for t in targets if m[: len(t)] != t} for m, targets in graph.items()}


def cycles(graph: dict) -> list:
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted("::".join(m) or "(crate root)" for m in component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


def main() -> int:
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    failed = False
    for crate in sorted(os.listdir(root)):
        src = os.path.join(root, crate, "src")
        if os.path.isdir(src):
            for cycle in cycles(dependencies(src)):
                print(f"{crate}: module cycle: {' <-> '.join(cycle)}")
                failed = True
    if not failed:
        print("no module cycles")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
