#!/usr/bin/env python3
"""Checks the architecture invariants that a grep can check (ARCHITECTURE.md, "Invariants").

1. No import cycle between the modules of `common` (edges from `use crate::X` and `crate::X::`).
2. Only `common/src/store/` speaks Redis: no Redis command, pipeline, script or connection type
   anywhere else in the libraries and binaries (the tests may inspect Redis directly).
3. `common` has no SSH, process or terminal code.
4. No source file over 600 lines.
5. Tests and scripts read only what the repository holds or the test command installs: no path
   in `tests/`, `scripts/`, `bench/` or `.ci/` climbs above the repository root (`..` past it,
   counted from the crate or script's own directory), names a sibling `shared/` directory, or
   is an absolute path into a home or work directory (`/work`, `/home`, `/root`, `/mnt`, `/srv`,
   `/Users`) — temporary directories and system tools (`/tmp`, `/usr/…`, `/proc`) are fine.
6. No function outside tests over 120 lines in the crates' `src/`. The functions that were
   longer when this check came are listed in `LONG_FUNCTIONS` with their length then: each
   may shrink, none may grow, and one that is split must leave the list (a listed function
   that is now short is reported too, so the list only ever shrinks).

Prints every violation and exits 1 when there is one; prints a one-line summary otherwise.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 600
SOURCES = ["common/src", "producer/src", "worker/src", "tests"]

RAW_REDIS = re.compile(r"\bredis::(cmd|pipe|Cmd|Pipeline|Script|aio|Value|streams|Client|RedisResult)\b|\bdeadpool_redis\b|\.query_async\(")
NOT_IN_COMMON = re.compile(r"\bopenssh\b|\bstd::process\b|\btokio::process\b|\bindicatif\b|\bIsTerminal\b")
CRATE_EDGE = re.compile(r"\bcrate::([a-z_]+)")
CLIMB = re.compile(r"(?:\.\./)+")
OUTSIDE = re.compile(r"""(?<![\w.$}])/(?:work|home|root|mnt|srv|Users)/|(?<![\w])shared/data\b""")
SELF_CONTAINED = ["tests", "scripts", "bench", ".ci"]
MAX_FN_LINES = 120
CRATE_SOURCES = ["common/src", "producer/src", "worker/src"]
# Functions over MAX_FN_LINES when check 6 came, with their length then (file, function):
# to be split into named steps (issue: "Long functions and files"). Only ever shrinks.
LONG_FUNCTIONS = {
    ("common/src/taskfile/validate.rs", "validate"): 312,
    ("worker/src/job.rs", "run_job"): 189,
    ("worker/src/batch/limits.rs", "spawn"): 153,
    ("common/src/template/shell/scan.rs", "cmd"): 145,
}
FN_START = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?(?:extern\s+\"[^\"]*\"\s+)?fn\s+([A-Za-z_][A-Za-z0-9_]*)")


def rust_files(rel):
    base = ROOT / rel
    return sorted(p for p in base.rglob("*.rs") if "node_modules" not in p.parts and "target" not in p.parts)


def code_lines(path):
    """The file's lines with line comments dropped (doc comments mention names freely)."""
    for n, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("//"):
            continue
        yield n, line


def common_module(path):
    rel = path.relative_to(ROOT / "common/src")
    return rel.parts[0].removesuffix(".rs") if len(rel.parts) > 1 or rel.name != "lib.rs" else None


def import_cycles():
    graph = {}
    for f in rust_files("common/src"):
        m = common_module(f)
        if m is None:
            continue
        deps = graph.setdefault(m, set())
        for _, line in code_lines(f):
            for target in CRATE_EDGE.findall(line):
                if target != m:
                    deps.add(target)
    problems = []
    state = {}

    def visit(node, stack):
        state[node] = "active"
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "active":
                cycle = stack[stack.index(dep):] + [dep]
                problems.append("import cycle in common: " + " → ".join(cycle))
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return problems, graph


def base_dir(path):
    """Where a relative path in `path` starts: its crate's directory for Rust
    (CARGO_MANIFEST_DIR), its own directory for a script."""
    if path.suffix == ".rs":
        for parent in path.parents:
            if (parent / "Cargo.toml").exists():
                return parent
    return path.parent


def outside_paths():
    problems = []
    for rel in SELF_CONTAINED:
        base = ROOT / rel
        if not base.exists():
            continue
        for f in sorted(p for p in base.rglob("*") if p.is_file() and "node_modules" not in p.parts and "data" not in p.relative_to(base).parts[:1]):
            if f.suffix not in (".rs", ".py", ".sh", ".js", "") or f.name == "README.md" or f == Path(__file__).resolve():
                continue
            depth = len(base_dir(f).relative_to(ROOT).parts)
            try:
                text = f.read_text()
            except UnicodeDecodeError:
                continue
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip().startswith(("//", "#")):
                    continue
                climbs = max((m.group(0).count("../") for m in CLIMB.finditer(line)), default=0)
                if climbs > depth:
                    problems.append(f"{f.relative_to(ROOT)}:{n}: climbs above the repository root ({climbs} × `..` from {depth} deep): {line.strip()}")
                if OUTSIDE.search(line):
                    problems.append(f"{f.relative_to(ROOT)}:{n}: reads outside the repository: {line.strip()}")
    return problems


def strip_literals(line, state):
    """`line` with string and char literals and comments blanked, so braces in them do not
    count; `state` carries an open block comment or raw string across lines."""
    out, i, n = [], 0, len(line)
    while i < n:
        if state.get("block"):
            end = line.find("*/", i)
            if end < 0:
                return "".join(out)
            state["block"] = False
            i = end + 2
            continue
        if state.get("raw") is not None:
            end = line.find('"' + "#" * state["raw"], i)
            if end < 0:
                return "".join(out)
            i = end + 1 + state["raw"]
            state["raw"] = None
            continue
        if state.get("str"):
            while i < n and line[i] != '"':
                i += 2 if line[i] == "\\" else 1
            if i >= n:
                return "".join(out)
            state["str"] = False
            i += 1
            continue
        c = line[i]
        if line.startswith("//", i):
            break
        if line.startswith("/*", i):
            state["block"] = True
            i += 2
            continue
        m = re.match(r'b?r(#*)"', line[i:])
        if m and (i == 0 or not (line[i - 1].isalnum() or line[i - 1] == "_")):
            state["raw"] = len(m.group(1))
            i += m.end()
            continue
        if c == '"':
            state["str"] = True
            i += 1
            continue
        m = re.match(r"'(?:\\.|[^'\\])'", line[i:])
        if c == "'" and m:
            i += m.end()
            continue
        out.append(c)
        i += 1
    return "".join(out)


def long_functions():
    """(file, function, lines) of every function outside tests in the crates' sources."""
    found = []
    for rel in CRATE_SOURCES:
        for f in rust_files(rel):
            if f.name == "tests.rs" or f.name.endswith("_tests.rs"):
                continue
            lines = f.read_text().splitlines()
            state, depth, stack, test_depth = {}, 0, [], None
            pending_test = False
            for n, raw in enumerate(lines, 1):
                code = strip_literals(raw, state)
                if "#[cfg(test)]" in raw:
                    pending_test = True
                m = FN_START.match(code)
                if m and "{" in code[m.end():] or (m and not code.rstrip().endswith(";")):
                    if m and test_depth is None:
                        stack.append((m.group(1), n, depth))
                for ch in code:
                    if ch == "{":
                        if pending_test and test_depth is None:
                            test_depth = depth
                            pending_test = False
                        depth += 1
                    elif ch == "}":
                        depth -= 1
                        if test_depth is not None and depth == test_depth:
                            test_depth = None
                        while stack and stack[-1][2] == depth and depth >= 0:
                            name, start, _ = stack.pop()
                            found.append((str(f.relative_to(ROOT)), name, n - start + 1))
                            break
                if code.strip().endswith(";") and stack and stack[-1][1] == n and depth == stack[-1][2]:
                    stack.pop()  # a declaration without a body (trait method)
                if pending_test and code.strip() and not code.strip().startswith("#") and "{" not in code:
                    pending_test = pending_test if code.strip().startswith(("mod", "fn", "pub")) else False
    return found


def function_lengths():
    problems, seen = [], set()
    for path, name, n in long_functions():
        key = (path, name)
        limit = LONG_FUNCTIONS.get(key)
        if limit is not None:
            seen.add(key)
            if n > limit:
                problems.append(f"{path}: fn {name} is {n} lines, longer than the {limit} it had; split it into named steps")
            elif n <= MAX_FN_LINES:
                problems.append(f"{path}: fn {name} is {n} lines now: take it off LONG_FUNCTIONS in scripts/check-structure.py")
        elif n > MAX_FN_LINES:
            problems.append(f"{path}: fn {name} is {n} lines (more than {MAX_FN_LINES}); split it into named steps")
    for key in LONG_FUNCTIONS.keys() - seen:
        problems.append(f"{key[0]}: fn {key[1]} is gone: take it off LONG_FUNCTIONS in scripts/check-structure.py")
    return problems


def main():
    problems, graph = import_cycles()
    problems += outside_paths()
    problems += function_lengths()
    store = ROOT / "common/src/store"
    checked = 0
    for rel in SOURCES:
        for f in rust_files(rel):
            checked += 1
            name = f.relative_to(ROOT)
            lines = f.read_text().count("\n")
            if lines > MAX_LINES:
                problems.append(f"{name}: {lines} lines (more than {MAX_LINES}); split it by concern")
            if rel == "tests":
                continue
            in_store = store in f.parents
            in_common = (ROOT / "common/src") in f.parents
            for n, line in code_lines(f):
                if not in_store and RAW_REDIS.search(line):
                    problems.append(f"{name}:{n}: Redis outside common/src/store: {line.strip()}")
                if in_common and NOT_IN_COMMON.search(line):
                    problems.append(f"{name}:{n}: SSH, process or terminal code in common: {line.strip()}")
    for p in problems:
        print(p)
    if problems:
        print(f"check-structure: {len(problems)} problem(s)")
        return 1
    edges = sum(len(v) for v in graph.values())
    print(f"check-structure: ok ({checked} files; common's {len(graph)} modules, {edges} import edges, no cycle; Redis only in common/src/store; tests and scripts self-contained; no function over {MAX_FN_LINES} lines but {len(LONG_FUNCTIONS)} listed to split)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
