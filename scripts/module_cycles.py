#!/usr/bin/env python3
"""Report circles between the modules of each crate of the workspace.

A module depends on another when its code (not its comments, and not its
`#[cfg(test)]` tail) names it through `crate::`, `super::` or `self::`. A
parent declaring `mod child;` is not a dependency; a parent that re-exports
or uses a child is. Circles are strongly connected components of that graph
with more than one module. Exits 1 when any crate has one, listing each with
the references that close it, so `make lint` refuses a new circle.

Why a script: cargo-modules (which draws such graphs) is not packaged in
Debian and compiling it would add minutes to CI; the rule needs only the
paths written in the source.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent
CRATES = [
    "agent",
    "aggregator-lambda",
    "inventory",
    "logformat",
    "wire",
    "tests",
    "bench",
]
# Bottom first. The agent's ground floor (`shared`: the ledger, file
# identity, the line sink, counters, the rate-limited log) imports no layer;
# `config` is what the operator said; then the data path read from its end,
# so each stage names only the stages after it: `read` hands lines to a sink
# that `pack` implements, `pack` fills `ship`'s queue, `ship` acknowledges
# into the ledger that `state` saves. `observe` watches all of them;
# `runtime` wires them; `commands` is the command line.
FLOORS = {
    "agent": [
        "shared",
        "config",
        "state",
        "ship",
        "pack",
        "read",
        "observe",
        "limits",
        "reload",
        "runtime",
        "commands",
    ],
}
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
PATH_RE = re.compile(rf"\b(crate|super|self)((?:::{IDENT})+|::\{{)")


def module_of(src: pathlib.Path, file: pathlib.Path) -> tuple:
    rel = file.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def code_lines(text: str):
    """Lines of code before a top-level `#[cfg(test)]`, without comments."""
    for line in text.splitlines():
        if line.startswith("#[cfg(test)]"):
            break
        stripped = line.lstrip()
        if stripped.startswith("//"):
            continue
        yield line.split("//", 1)[0] if "\"" not in line else line


def expand_braces(text: str, start: int) -> list:
    """The paths inside `{...}` starting at `start` (just after the brace)."""
    depth, i, item, items = 1, start, "", []
    while i < len(text) and depth:
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                break
        if c == "," and depth == 1:
            items.append(item)
            item = ""
        else:
            item += c
        i += 1
    items.append(item)
    out = []
    for it in items:
        it = it.strip()
        if not it:
            continue
        m = re.match(rf"({IDENT}(?:::{IDENT})*)(::\{{)?", it)
        if not m:
            continue
        if m.group(2):
            inner = it[m.end():]
            for sub in expand_braces(inner, 0):
                out.append(m.group(1) + "::" + sub)
        else:
            out.append(m.group(1))
    return out


def references(text: str):
    body = "\n".join(code_lines(text))
    for m in PATH_RE.finditer(body):
        head, rest = m.group(1), m.group(2)
        if rest == "::{":
            for p in expand_braces(body, m.end()):
                yield head, p.split("::")
        else:
            yield head, rest.strip(":").split("::")


def resolve(me: tuple, head: str, parts: list, modules: set, is_mod_file: bool):
    if head == "crate":
        base = []
    elif head == "self":
        base = list(me)
    else:  # super: the parent of a mod.rs/x.rs module is one level up
        base = list(me[:-1])
    while parts and parts[0] == "super":
        base = base[:-1]
        parts = parts[1:]
    path = base + [p for p in parts if p != "self"]
    best = None
    for n in range(len(path), -1, -1):
        if tuple(path[:n]) in modules:
            best = tuple(path[:n])
            break
    return best


def sccs(graph: dict):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
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
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def crate_cycles(crate: str):
    src = ROOT / crate / "src"
    files = sorted(src.rglob("*.rs"))
    mods = {}
    for f in files:
        # A binary's own tree (src/bin/x.rs) is a crate of its own.
        if "bin" in f.relative_to(src).parts or f.name == "main.rs":
            continue
        mods[module_of(src, f)] = f
    modules = set(mods)
    graph, why = {m: set() for m in modules}, {}
    for me, f in mods.items():
        is_mod_file = f.name in ("mod.rs", "lib.rs")
        for head, parts in references(f.read_text()):
            target = resolve(me, head, parts, modules, is_mod_file)
            if target is None or target == me:
                continue
            # A module naming its own ancestor's items is the ancestor's child
            # using it; naming a descendant from an ancestor is a real edge.
            graph[me].add(target)
            why.setdefault((me, target), "::".join([head] + parts))
    cycles = []
    for comp in sccs(graph):
        if len(comp) > 1:
            cycles.append(comp)
    return cycles, graph, why


def floor_breaches(crate: str, graph: dict, why: dict):
    """References that run from a floor up to a higher one, and top-level
    modules with no floor."""
    floors = FLOORS.get(crate)
    if floors is None:
        return []
    level = {f: i for i, f in enumerate(floors)}
    out = []
    tops = sorted({m[0] for m in graph if m})
    for t in tops:
        if t not in level:
            out.append(f"{crate}: top-level module `{t}` has no floor in FLOORS (scripts/module_cycles.py)")
    for a in sorted(graph):
        for b in sorted(graph[a]):
            if not a or not b or a[0] not in level or b[0] not in level:
                continue
            if level[b[0]] > level[a[0]]:
                out.append(
                    f"{crate}: {name(a)} (floor `{a[0]}`) names {name(b)} (floor `{b[0]}`, above it)  ({why[(a, b)]})"
                )
    return out


def name(m: tuple) -> str:
    return "::".join(m) if m else "(crate root)"


def main() -> int:
    bad = 0
    for crate in CRATES:
        if not (ROOT / crate / "src").is_dir():
            continue
        cycles, graph, why = crate_cycles(crate)
        for comp in cycles:
            bad += 1
            members = set(comp)
            print(f"{crate}: circle between {', '.join(sorted(name(m) for m in comp))}")
            for a in sorted(comp):
                for b in sorted(graph[a] & members):
                    print(f"    {name(a)} -> {name(b)}  ({why[(a, b)]})")
        for line in floor_breaches(crate, graph, why):
            bad += 1
            print(line)
    if bad:
        print(f"{bad} circle(s) between modules or import(s) running up a floor")
        return 1
    print("no circles between modules in " + ", ".join(CRATES))
    for crate, floors in FLOORS.items():
        print(f"{crate}: floors in order, no import running up: " + " < ".join(floors))
    return 0


if __name__ == "__main__":
    sys.exit(main())
