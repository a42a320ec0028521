#!/usr/bin/env python3
"""Checks the package's public surface and file sizes against docs/architecture.md.

- The library product is CLIPKit; a module it does not re-export has no `public` declaration (the rest use
  `package`). For each module the product shows, the number of `public` declarations must equal the table in
  docs/architecture.md (`<!-- public-api: begin -->` … `end`): growth is a decision recorded there, not an accident.
- No public declaration takes or returns a raw pointer (`Unsafe…Pointer`, `OpaquePointer`).
- No Swift file under Sources/ or Tests/ is longer than 500 lines.

No third-party packages: runs on the system Python.

    python3 Scripts/ci/check_api.py            # exit 0 when everything agrees, else 1 with one line per problem
    python3 Scripts/ci/check_api.py --counts   # print the table's rows as they are now
"""
import pathlib
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from check_imports import code_only, module_folders  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
PRODUCT = "CLIPKit"
MAX_LINES = 500
PUBLIC = re.compile(r"(?<![\w.@])public\b")
EXPORT = re.compile(r"^\s*@_exported\s+import\s+(\w+)", re.M)
RAW = re.compile(r"\b(?:Unsafe(?:Mutable)?(?:Raw)?(?:Buffer)?Pointer|OpaquePointer)\b")


FOLDERS = module_folders()


def sources(module):
    return sorted(FOLDERS[module].rglob("*.swift"))


def shipped():
    """The product's module and every module it re-exports, transitively."""
    seen, todo = set(), [PRODUCT]
    while todo:
        m = todo.pop()
        if m in seen or m not in FOLDERS:
            continue
        seen.add(m)
        for f in sources(m):
            todo += EXPORT.findall(f.read_text(encoding="utf-8"))
    return seen


def table():
    text = (ROOT / "docs/architecture.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- public-api: begin -->(.*?)<!-- public-api: end -->", text, re.S)
    if not m:
        sys.exit("docs/architecture.md: no '<!-- public-api: begin -->' ... '<!-- public-api: end -->' table")
    rows = {}
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[1].isdigit():
            rows[cells[0]] = int(cells[1])
    return rows


def main():
    problems, counts = [], {}
    product = shipped()
    for module in sorted(FOLDERS):
        n = 0
        for f in sources(module):
            code = code_only(f.read_text(encoding="utf-8"))
            for number, line in enumerate(code.splitlines(), 1):
                if re.match(r"\s*(?:@\w+\s+)*(?:public\s+)?import\b", line):
                    continue
                hits = len(PUBLIC.findall(line))
                n += hits
                if hits and RAW.search(line):
                    problems.append(f"{f.relative_to(ROOT)}:{number}: a public declaration with a raw pointer")
        if module in product:
            counts[module] = n
        elif n:
            problems.append(f"{FOLDERS[module].relative_to(ROOT)}: {n} public declaration(s), but {PRODUCT} does not re-export it (use package)")
    if "--counts" in sys.argv:
        for m, n in sorted(counts.items()):
            print(f"| {m} | {n} |")
        print(f"| total | {sum(counts.values())} |")
        return 0
    expected = table()
    for m in sorted(set(counts) | set(expected) - {"total"}):
        if counts.get(m) != expected.get(m):
            problems.append(f"{m}: {counts.get(m, 'not shipped')} public declarations, docs/architecture.md says {expected.get(m, 'none')}")
    if expected.get("total") != sum(counts.values()):
        problems.append(f"total: {sum(counts.values())} public declarations, docs/architecture.md says {expected.get('total')}")
    for top in ("Sources", "Tests"):
        for f in sorted((ROOT / top).rglob("*.swift")):
            lines = f.read_text(encoding="utf-8").count("\n")
            if lines > MAX_LINES:
                problems.append(f"{f.relative_to(ROOT)}: {lines} lines (at most {MAX_LINES})")
    for p in problems:
        print(p)
    print(f"api: {len(counts)} shipped modules, {sum(counts.values())} public declarations, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
