#!/usr/bin/env python3
"""Checks the architecture invariants that a grep can check (ARCHITECTURE.md, "Invariants").

1. No import cycle between the files of any crate (`common`, the worker, the producer): an
   edge for every `crate::`, `super::`, `self::` or child-module path, in `use` and in code,
   to the file that defines what it names (a name a `mod.rs` only imports leads on to the
   file it comes from, so a facade `mod.rs` is fine; one that defines what its children use
   and uses them back is a cycle). Test code is left out.
2. Only `common/src/store/` speaks Redis: no Redis command, pipeline, script or connection type
   anywhere else in the libraries and binaries (the tests may inspect Redis directly).
3. `common` has no SSH, process or terminal code.
4. No source file over 600 lines.
5. Tests and scripts read only what the repository holds or the test command installs: no path
   in `tests/`, `scripts/`, `bench/` or `.ci/` climbs above the repository root (`..` past it,
   counted from the crate or script's own directory), names a sibling `shared/` directory, or
   is an absolute path into a home or work directory (`/work`, `/home`, `/root`, `/mnt`, `/srv`,
   `/Users`) — temporary directories and system tools (`/tmp`, `/usr/…`, `/proc`) are fine.
6. No function outside tests over 120 lines in the crates' `src/`.

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
CLIMB = re.compile(r"(?:\.\./)+")
OUTSIDE = re.compile(r"""(?<![\w.$}])/(?:work|home|root|mnt|srv|Users)/|(?<![\w])shared/data\b""")
SELF_CONTAINED = ["tests", "scripts", "bench", ".ci"]
MAX_FN_LINES = 120
CRATE_SOURCES = ["common/src", "producer/src", "worker/src"]
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


def cycle_path(graph, comp):
    """One cycle through the first file of a strongly connected component, each step with a
    path that makes it: `a.rs → b.rs (super::X) → a.rs (crate::a::Y)`."""
    start, inside = comp[0], set(comp)
    prev, queue = {start: None}, [start]
    while queue:
        v = queue.pop(0)
        for w, why in sorted(graph[v].items()):
            if w not in inside:
                continue
            if w == start:
                steps, node = [(start, why[0])], v
                while node != start:
                    p = prev[node]
                    steps.append((node, graph[p][node][0]))
                    node = p
                steps.reverse()
                return " → ".join([start] + [f"{n} ({why})" for n, why in steps])
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return ", ".join(comp)


def import_cycles():
    """Problems with the crates' file import graphs, and (files, edges) counted."""
    problems, files, edges = [], 0, 0
    for rel in CRATE_SOURCES:
        graph = crate_graph(rel)
        files += len(graph)
        edges += sum(len(v) for v in graph.values())
        for comp in strongly_connected(graph):
            problems.append(f"import cycle in {rel}: {cycle_path(graph, comp)}; move what both sides use into a file of its own that imports neither")
    return problems, files, edges


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
            if is_test_file(f):
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


IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
USE_STMT = re.compile(r"\buse\s+([^;]+);")
MOD_DECL = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;")
PATH_EXPR = re.compile(r"(?<![\w:])((?:crate|super|self)(?:::" + IDENT + r")+)")


def is_test_file(path):
    return path.name == "tests.rs" or path.name.endswith("_tests.rs")


def module_of(path, src):
    """The module path of a file under a crate's `src/` (lib.rs is the root)."""
    rel = path.relative_to(src)
    parts = list(rel.parts[:-1])
    if rel.name not in ("mod.rs", "lib.rs"):
        parts.append(rel.stem)
    return tuple(parts)


def non_test_code(path):
    """The file's code with literals and comments blanked and `#[cfg(test)]` items dropped."""
    state, depth, skip_from, pending, kept = {}, 0, None, False, []
    for raw in path.read_text().splitlines():
        code = strip_literals(raw, state)
        if "#[cfg(test)]" in code:
            pending = True
            continue
        if pending and skip_from is None:
            if MOD_DECL.match(code):  # `#[cfg(test)] mod tests;`: a test file
                pending = False
                continue
            if "{" in code:
                skip_from, pending = depth, False
        depth += code.count("{") - code.count("}")
        if skip_from is not None:
            if depth <= skip_from:
                skip_from = None
            continue
        kept.append(code)
    return "\n".join(kept)


def expand_use(tree):
    """`a::{b, c::{d, self}}` → ["a::b", "a::c::d", "a::c"]."""
    tree = re.sub(r"\s+as\s+" + IDENT, "", tree)
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix, text):
        i = text.find("{")
        if i < 0:
            for item in filter(None, text.split(",")):
                out.append(prefix + item)
            return
        head, body, depth = text[:i], "", 0
        for j in range(i, len(text)):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                body = text[i + 1 : j]
                break
        parts, depth, cur = [], 0, ""
        for ch in body:
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
                continue
            depth += {"{": 1, "}": -1}.get(ch, 0)
            cur += ch
        parts.append(cur)
        for part in filter(None, parts):
            if part == "self":
                out.append((prefix + head).rstrip(":"))
            else:
                walk(prefix + head, part)

    walk("", tree)
    return out


def use_paths(code, children):
    """Every module path a file's code names: `use` trees expanded, and `crate::`, `super::`,
    `self::` and child-module paths in expressions."""
    paths = []
    for m in USE_STMT.finditer(code):
        paths += expand_use(m.group(1))
    paths += PATH_EXPR.findall(code)
    if children:
        paths += re.findall(r"(?<![\w:])((?:" + "|".join(sorted(children)) + r")(?:::" + IDENT + r")+)", code)
    return paths


def absolute(path, mod, leaf, children):
    """`path` as written in module `mod` → its segments from the crate root, or None when it
    leaves the crate."""
    segs = path.split("::")
    if segs[0] == "crate":
        return segs[1:]
    if segs[0] == "self":
        return list(mod) + segs[1:]
    if segs[0] == "super":
        base = list(mod[:-1]) if leaf else list(mod)
        segs = segs[1:]
        while segs and segs[0] == "super":
            base, segs = base[:-1], segs[1:]
        return base + segs
    if segs[0] in children:
        return list(mod) + segs
    return None


def crate_graph(rel):
    """File-level import graph of one crate: an edge for every `crate::`, `super::`, `self::`
    or child-module path (in `use` and in code) to the file that defines what it names — a
    name a module only imports (`use child::X`, `pub use child::X`) leads on to the file it
    comes from."""
    src = ROOT / rel
    files, info = {}, {}
    for f in rust_files(rel):
        if f.name == "main.rs" or is_test_file(f):
            continue
        files[module_of(f, src)] = f
    for mod, f in files.items():
        code = non_test_code(f)
        children = {m.group(1) for line in code.splitlines() if (m := MOD_DECL.match(line))}
        leaf = f.name not in ("mod.rs", "lib.rs")
        exports = {}
        for m in USE_STMT.finditer(code):
            for path in expand_use(m.group(1)):
                full = absolute(path, mod, leaf, children)
                if full:
                    exports[full[-1]] = full
        info[mod] = (f, code, children, leaf, exports)

    def resolve(full, depth=0):
        for n in range(len(full), -1, -1):
            target = files.get(tuple(full[:n]))
            if target is None:
                continue
            rest, (_, _, children, _, exports) = full[n:], info[tuple(full[:n])]
            if rest and rest[0] in exports and depth < 8:
                return resolve(exports[rest[0]] + rest[1:], depth + 1)
            if rest and rest[0] in children:
                return None  # a module whose file is outside `src/` (`#[path]`): not this crate's graph
            return target
        return None

    graph = {}
    for mod, (f, code, children, leaf, _) in info.items():
        deps = graph.setdefault(str(f.relative_to(ROOT)), {})
        for path in use_paths(code, children):
            full = absolute(path, mod, leaf, children)
            target = resolve(full) if full is not None else None
            if target is not None and target != f:
                deps.setdefault(str(target.relative_to(ROOT)), []).append(path)
    return graph


def strongly_connected(graph):
    """Tarjan's strongly connected components of more than one node, each sorted."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def function_lengths():
    return [f"{path}: fn {name} is {n} lines (more than {MAX_FN_LINES}); split it into named steps" for path, name, n in long_functions() if n > MAX_FN_LINES]


def main():
    problems, graph_files, graph_edges = import_cycles()
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
    print(f"check-structure: ok ({checked} files; the crates' {graph_files} files, {graph_edges} import edges, no cycle; Redis only in common/src/store; tests and scripts self-contained; no function over {MAX_FN_LINES} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
