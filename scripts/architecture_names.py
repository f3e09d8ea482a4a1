#!/usr/bin/env python3
"""Check that docs/ARCHITECTURE.md names only what exists, and maps it whole.

The map goes stale quietly: a file moves, a type is renamed, and the page
still sends a newcomer to the old name. This reads every name the page
writes in backticks (and the module paths of its code blocks) and checks it
against the tree:

- a path (`agent/src/read/tailer.rs`, `config/units.rs`, `fuzz/seeds/`) is
  a file or folder git tracks, whole or as the end of a tracked path;
- a module path (`read::tailer::Tailer`, `tailrace_wire::classify`) leads
  through module files, and what follows the last one is a word of its code;
- a type-like name (`Ledger`, `MetadataSource`) is defined in the code (a
  struct, enum, trait, type, const, static or enum variant) or is a string
  the code writes (a dimension or metric name);
- a snake_case name with an underscore (`write_atomic`, `start_at`) is a
  word of the code.

And the module tables ("Agent modules", "Aggregator modules", "Inventory
modules") list exactly the modules of their crate's `src/`: each row's file
exists, and each module file one level into a folder has its row (deeper
files belong to their parent's row). Comments do not count as code. Exits 1
listing what is wrong; run by `make lint` and `make check`.
"""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ARCHITECTURE.md"
TABLES = {
    "Agent modules": "agent/src",
    "Aggregator modules": "aggregator-lambda/src",
    "Inventory modules": "inventory/src",
}
CRATE_SRC = {
    "tailrace_agent": "agent/src",
    "tailrace_aggregator": "aggregator-lambda/src",
    "tailrace_inventory": "inventory/src",
    "tailrace_wire": "wire/src",
    "tailrace_logformat": "logformat/src",
    "tailrace_tests": "tests/src",
}
PATH_ENDINGS = (".rs", ".md", ".toml", ".yaml", ".py", ".sh", "/")


def tracked():
    out = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [p for p in out if (ROOT / p).exists()]


def code_of(text):
    """The lines of Rust source that are not comments."""
    return "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("//")
    )


def main():
    files = tracked()
    rust = {p: code_of((ROOT / p).read_text(errors="replace")) for p in files if p.endswith(".rs")}
    code = "\n".join(rust.values())
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", code))
    strings = set(re.findall(r'"([A-Za-z][A-Za-z0-9]*)"', code))
    defined = set(
        re.findall(r"\b(?:struct|enum|trait|type|const|static|union)\s+([A-Za-z_][A-Za-z0-9_]*)", code)
    )
    defined |= set(re.findall(r"(?m)^\s+([A-Z][A-Za-z0-9]*)\s*(?:[,({]|$)", code))
    text = DOC.read_text()
    wrong = []

    def path_exists(token):
        t = token.rstrip("/")
        return any(p == t or p.endswith("/" + t) or p.startswith(t + "/") or ("/" + t + "/") in p for p in files)

    def module_file(src, parts):
        base = ROOT / src
        for part in parts:
            base = base / part
        for f in (base.with_suffix(".rs"), base / "mod.rs"):
            if f.exists():
                return f.relative_to(ROOT).as_posix()
        return None

    def module_path_exists(token):
        parts = token.split("::")
        if parts[0] in CRATE_SRC:
            srcs, parts = [CRATE_SRC[parts[0]]], parts[1:]
        else:
            srcs = sorted({p.rsplit("/src/", 1)[0] + "/src" for p in rust if "/src/" in p})
            # A path may start below a crate's root (`decision::start`).
            srcs += sorted({str(pathlib.Path(p).parent) for p in rust})
        for src in srcs:
            n = len(parts)
            while n > 0 and module_file(src, parts[:n]) is None:
                n -= 1
            if n == 0:
                continue
            body = rust.get(module_file(src, parts[:n]), "")
            rest = parts[n:]
            if all(re.search(rf"\b{re.escape(r)}\b", body) for r in rest):
                return True
        # `Validated::load`: a type, then its item.
        return parts[0] in defined and all(p in words for p in parts[1:])

    blocks = re.findall(r"```.*?```", text, flags=re.S)
    tokens = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    for block in blocks:
        tokens += re.findall(r"\b[a-z_]+(?:::[A-Za-z_]+)+", block)
    for token in sorted(set(tokens)):
        t = token.strip().removesuffix("()")
        if " " in t or t[:1].isdigit() or t.startswith(("/", "-", "$", "<", "s3:")) or ":" in t.replace("::", ""):
            continue
        if "/" in t or t.endswith(PATH_ENDINGS[:-1]):
            if t.endswith(PATH_ENDINGS) and not any(c in t for c in "*<>{}"):
                if not path_exists(t):
                    wrong.append(f"no such file or folder: `{t}`")
            continue
        if "::" in t:
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)+", t) and not module_path_exists(t):
                wrong.append(f"no such module path: `{t}`")
            continue
        if re.fullmatch(r"[A-Z][A-Za-z0-9]*", t) and re.search(r"[a-z]", t):
            if t not in defined and t not in strings:
                wrong.append(f"no such type (or name the code writes): `{t}`")
            continue
        if re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)+", t) and t not in words:
            wrong.append(f"no such name in the code: `{t}`")

    # The module tables, against the folders.
    for title, src in TABLES.items():
        m = re.search(rf"^## {title}\n(.*?)(?=^## )", text, flags=re.S | re.M)
        if not m:
            wrong.append(f"no section `## {title}`")
            continue
        listed, folder = set(), ""
        for row in re.findall(r"^\|(.*)\|\s*$", m.group(1), flags=re.M):
            cells = [c.strip() for c in row.split("|")]
            if re.fullmatch(r"[-: ]+", cells[0]) or cells[0] in ("folder", "module"):
                continue
            if title == "Inventory modules":
                folder, module = "", cells[0]
            else:
                first, module = cells[0], cells[1]
                if first:
                    folder = "" if first == "(top)" else first.strip("`").rstrip("/")
            module = module.strip("`")
            parts = [p for p in (folder, "" if module == "mod" else module) if p]
            f = module_file(src, parts)
            if f is None:
                wrong.append(f"{title}: no module `{'/'.join(parts)}` in {src}/")
            else:
                listed.add(f)
        for p in rust:
            if not p.startswith(src + "/"):
                continue
            rel = p[len(src) + 1 :].split("/")
            # A folder's mod.rs is the folder itself; files deeper than one
            # level into it belong to their parent module's row.
            if rel[0] in ("main.rs", "lib.rs", "bin") or rel[-1] == "mod.rs" and len(rel) == 2:
                continue
            if len(rel) > 2 + (rel[-1] == "mod.rs"):
                continue
            if len(rel) == 2 and rel[1] != "mod.rs" and (ROOT / src / rel[0] / "mod.rs").exists() is False:
                continue
            if p not in listed:
                wrong.append(f"{title}: {p} has no row")

    for w in wrong:
        print(f"docs/ARCHITECTURE.md: {w}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
