#!/usr/bin/env python3
"""Checks every Swift module's imports against the table in docs/architecture.md.

An import the table does not allow fails, and so does an allowed import no file of the module uses any more (the
table is the picture a maintainer reads, so it must stay true). Modules under Sources/ missing from the table, and
rows naming a module that does not exist, fail too. No third-party packages: runs on the system Python.

    python3 Scripts/ci/check_imports.py        # exit 0 when everything agrees, else 1 with one line per problem
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
SYSTEM = {"Foundation", "Glibc", "Darwin", "Dispatch", "Synchronization", "FoundationNetworking", "Musl", "Android"}
# At a line's start or after ";": attributes (@preconcurrency, @_exported, @testable, @_spi(X)…) and an access level
# (Swift 6's `public import`, `package import`…) in any order, then `import`, an optional kind, the module.
_ATTR = r"(?:@\w+(?:\([^)]*\))?\s+|(?:public|package|internal|fileprivate|private)\s+)*"
IMPORT = re.compile(r"(?:^|;)[ \t]*" + _ATTR + r"import\s+(?:(?:struct|class|enum|func|protocol|typealias|var|let)\s+)?([A-Za-z_][A-Za-z0-9_]*)", re.M)


def module_folders():
    """Each module's folder: Sources/<group>/<module> (the groups say the layers: C, Model, Inputs, Loading, Kit,
    Apps, Commands)."""
    return {m.name: m for g in (ROOT / "Sources").iterdir() if g.is_dir() for m in g.iterdir() if m.is_dir()}


def table():
    text = (ROOT / "docs/architecture.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- imports: begin -->(.*?)<!-- imports: end -->", text, re.S)
    if not m:
        sys.exit("docs/architecture.md: no '<!-- imports: begin -->' ... '<!-- imports: end -->' table")
    allowed = {}
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or cells[0] in ("Module", "---") or not cells[0]:
            continue
        # "CCLIPKernels (why)" keeps the name; "—" is none.
        names = [re.sub(r"\s*\(.*", "", c).strip() for c in re.split(r",(?![^(]*\))", cells[1])]
        allowed[cells[0]] = {n for n in names if n and n != "—"}
    return allowed


def code_only(text):
    """The text with comments and string literals blanked (newlines kept), so that the word "import" in a message
    or a doc comment is not taken for an import."""
    out, i, n = [], 0, len(text)
    while i < n:
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif text.startswith('"""', i):
            j = text.find('"""', i + 3)
            j = n if j < 0 else j + 3
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif text[i] == '"':
            j = i + 1
            while j < n and text[j] not in '"\n':
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            out.append('""')
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def imports(module_dir):
    found = {}
    for path in sorted(module_dir.rglob("*.swift")):
        for name in IMPORT.findall(code_only(path.read_text(encoding="utf-8"))):
            if name not in SYSTEM:
                found.setdefault(name, path.relative_to(ROOT))
    return found


def main():
    allowed = table()
    folders = module_folders()
    modules = sorted(folders)
    problems = []
    for name in modules:
        if name not in allowed:
            problems.append(f"{folders[name].relative_to(ROOT)}: not in docs/architecture.md's import table")
            continue
        found = imports(folders[name])
        for imported, where in sorted(found.items()):
            if imported not in allowed[name]:
                problems.append(f"{where}: imports {imported}, which {name} may not (docs/architecture.md)")
        for unused in sorted(allowed[name] - set(found)):
            problems.append(f"docs/architecture.md: {name} may import {unused}, but no file does (remove it from the table)")
    for name in sorted(set(allowed) - set(modules)):
        problems.append(f"docs/architecture.md: {name} is not a module under Sources/")
    for p in problems:
        print(p)
    print(f"imports: {len(modules)} modules checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
