#!/usr/bin/env python3
"""Import cycles between the files of a crate: `scripts/import-cycles.py crates/rooms ...`.

A file depends on another when it names an item of that file's module by path
(`crate::a::b`, `super::x`, `self::x`, or a child module's name), in a `use` or in code.
Items re-exported by `pub use` count as their origin's; a file naming what an enclosing
module (the crate root, a `mod.rs`) defines is not a dependency on a sibling and is skipped. Prints each cycle
(strongly connected group of files) and exits 1 if there is any."""

import os
import re
import sys


def modules(src):
    """Module path (tuple) -> file, for every .rs file under `src`."""
    out = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith('.rs'):
                continue
            rel = os.path.relpath(os.path.join(root, f), src)[:-3].split(os.sep)
            if rel[-1] in ('mod', 'lib', 'main'):
                rel = rel[:-1]
            out[tuple(rel)] = os.path.join(root, f)
    return out


def strip(text):
    """The code without comments, string and char literals."""
    out, i, n = [], 0, len(text)
    while i < n:
        if text.startswith('//', i):
            i = text.find('\n', i)
            i = n if i < 0 else i
        elif text.startswith('/*', i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith('/*', i):
                    depth, i = depth + 1, i + 2
                elif text.startswith('*/', i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif (m := re.match(r'b?r(#*)"', text[i:])) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == '_')):
            end = text.find('"' + m.group(1), i + m.end())
            out.append('""')
            i = n if end < 0 else end + 1 + len(m.group(1))
        elif text[i] == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == '\\' else 1
            out.append('""')
            i += 1
        elif m := re.match(r"b?'(\\.[^']*|[^'\\])'", text[i:]):
            out.append("' '")
            i += m.end()
        else:
            out.append(text[i])
            i += 1
    return ''.join(out)


def expand_use(tree):
    """`a::{b, c::{d}}` -> ['a::b', 'a::c::d']."""
    tree = re.sub(r'\s+', '', tree)
    depth, start, parts = 0, 0, []
    if '{' not in tree:
        return [re.sub(r'as\w+$', '', tree)]
    i = tree.index('{')
    prefix, inner = tree[:i], tree[i + 1:tree.rindex('}')]
    for j, ch in enumerate(inner + ','):
        if ch == '{':
            depth += 1
        elif ch == '}':
            depth -= 1
        elif ch == ',' and depth == 0:
            piece = inner[start:j]
            start = j + 1
            if piece:
                parts.extend(prefix + p for p in expand_use(piece))
    return parts


def paths(text):
    text = strip(text)
    found = []
    for m in re.finditer(r'\buse\s+([^;]+);', text):
        found.extend(expand_use(m.group(1)))
    text = re.sub(r'\buse\s+[^;]+;', '', text)
    found.extend(m.group(0) for m in re.finditer(r'\b(?:crate|super|self)(?:::\w+)+', text))
    found.extend(m.group(0) for m in re.finditer(r'\b[a-z_][a-z0-9_]*(?:::\w+)+', text))
    return found


def resolve(path, here, mods):
    segs = [s for s in path.split('::') if s]
    if not segs:
        return None
    if segs[0] == 'crate':
        base, segs = [], segs[1:]
    elif segs[0] in ('super', 'self'):
        base = list(here)
        while segs and segs[0] in ('super', 'self'):
            if segs[0] == 'super':
                base = base[:-1]
            segs = segs[1:]
    elif tuple(list(here) + [segs[0]]) in mods:
        base = list(here)  # a child module named relatively
    elif here == () or tuple([segs[0]]) not in mods:
        return None
    else:
        return None
    full = base + segs
    for n in range(len(full), -1, -1):
        if tuple(full[:n]) in mods:
            return tuple(full[:n])
    return None


def here_of(mod, file):
    return mod


def reexports(mods):
    """(module, name) -> the path a `pub use` in `module` re-exports as `name`."""
    out = {}
    for m, f in mods.items():
        for use in re.finditer(r'\bpub(?:\([^)]*\))?\s+use\s+([^;]+);', strip(open(f).read())):
            for p in expand_use(use.group(1)):
                alias = re.search(r'\bas\s*(\w+)$', p)
                p = re.sub(r'\s*as\s*\w+$', '', p)
                out[(m, alias.group(1) if alias else p.split('::')[-1])] = (m, p)
    return out


def graph(src):
    mods = modules(src)
    again = reexports(mods)
    edges = {m: set() for m in mods}
    for m, f in mods.items():
        text = re.sub(r'\bpub(?:\([^)]*\))?\s+use\s+[^;]+;', '', strip(open(f).read()))
        for p in paths(text):
            target = resolve(p, m, mods)
            # An item a module re-exports counts as its origin's.
            seen = set()
            while target is not None and (target, p) not in seen:
                seen.add((target, p))
                rest = p.split('::')
                item = next((s for s in reversed(rest) if s), None)
                key = (target, item)
                if key not in again:
                    break
                origin, path = again[key]
                target, p = resolve(path, origin, mods), path
            # What a file's enclosing modules define (or re-export) is its context, not a
            # sibling it depends on: only edges to non-ancestors count.
            if target is not None and target != m and m[: len(target)] != target:
                edges[m].add(target)
    return mods, edges


def sccs(edges):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(group)

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def name(m):
    return '::'.join(m) or 'lib'


bad = 0
for crate in sys.argv[1:]:
    mods, edges = graph(os.path.join(crate, 'src'))
    for group in sccs(edges):
        bad += 1
        members = set(group)
        print(f'{crate}: cycle among {", ".join(sorted(name(m) for m in group))}')
        for m in sorted(group):
            for t in sorted(edges[m] & members):
                print(f'    {name(m)} -> {name(t)}')
sys.exit(1 if bad else 0)
