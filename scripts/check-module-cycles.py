#!/usr/bin/env python3
"""Fails when modules inside one crate import each other in a circle.

A module is a file under `<crate>/src` (`a/b.rs` and `a/b/mod.rs` are module `a::b`). An edge
A -> B is any path `crate::B...` (or `super::`/`self::` resolved to B) written in A outside its
`#[cfg(test)]` module. A parent declaring `mod child;` is not an edge by itself: only a path that
uses something. Edges to a module's own descendants are ignored (a module may use what it
contains); the check is for circles between siblings and cousins, which is what makes code
impossible to read in one direction.

Usage: scripts/check-module-cycles.py [crate_dir ...]   (default: every workspace crate)
"""

import os
import re
import sys

CRATES = ["core", "coordinator", "worker", "cli", "proto", "mock-backend", "tests"]
PATH_RE = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP_RE = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*?)\}", re.S)


def module_of(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def strip_tests(text):
    # Drop `#[cfg(test)] mod tests { ... }` blocks (brace matched) and comments.
    text = re.sub(r"//[^\n]*", "", text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i : m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def resolve(mod, head, segs, modules):
    if head == "crate":
        base = ()
    elif head == "self":
        base = mod
    else:
        base = mod
        while segs and segs[0] == "super":
            segs = segs[1:]
            base = base[:-1]
        base = base[:-1]
    full = base + tuple(s for s in segs if s != "super")
    # Longest prefix that names a module.
    for n in range(len(full), 0, -1):
        if full[:n] in modules:
            return full[:n]
    return None


def edges_of(crate_dir):
    src = os.path.join(crate_dir, "src")
    files = {}
    for root, _, names in os.walk(src):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(root, n)
                files[module_of(src, p)] = p
    modules = set(files)
    edges = {m: set() for m in modules}
    for mod, path in files.items():
        text = strip_tests(open(path, encoding="utf-8").read())
        paths = []
        for m in GROUP_RE.finditer(text):
            for item in re.split(r"[,\s]+", m.group(3)):
                item = item.split("::")[0].strip()
                if item and item not in ("self", "*") and re.match(r"^[A-Za-z_]", item):
                    paths.append((m.group(1), m.group(2) + "::" + item))
        paths += [(m.group(1), m.group(2)) for m in PATH_RE.finditer(text)]
        for head, rest in paths:
            segs = [s for s in rest.split("::") if s]
            target = resolve(mod, head, segs, modules)
            if target is None or target == mod:
                continue
            if target[: len(mod)] == mod:  # own descendant
                continue
            if mod[: len(target)] == target:  # own ancestor: edge to the ancestor's own file
                pass
            edges[mod].add(target)
    return edges


def cycles(edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            strong(v)
    return out


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    crates = sys.argv[1:] or [os.path.join(root, c) for c in CRATES]
    bad = 0
    for c in crates:
        if not os.path.isdir(os.path.join(c, "src")):
            continue
        for comp in cycles(edges_of(c)):
            bad += 1
            names = ["::".join(m) or "<root>" for m in comp]
            print(f"{os.path.basename(os.path.normpath(c))}: import circle: {' <-> '.join(names)}")
    if bad:
        sys.exit(1)
    print("no import circles")


if __name__ == "__main__":
    main()
