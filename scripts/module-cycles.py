#!/usr/bin/env python3
"""Lists the pairs of modules of one crate that import each other (a cycle between two modules).

Usage: scripts/module-cycles.py CRATE_SRC_DIR...   (e.g. relay/src)

A module is a top-level file or directory of src/ (src/dissect/flow.rs belongs to `dissect`);
lib.rs, main.rs, mod.rs files at the top and test modules are not modules here. Only code counts:
a file is read up to its first `#[cfg(test)]`, lines that start with `//` are dropped, and every
`crate::NAME` left is an import of module NAME. Prints `CRATE N [pairs]` per directory (pairs of
modules that import each other), then, if there are any, the cycles through more modules (each
strongly connected group of three or more modules that no pair explains, as a sorted list), and
exits 1 if any directory has either. The root package's test `module_graph` runs it on every crate.
"""
import glob
import os
import re
import sys


def graph(base):
    files = {}
    for f in glob.glob(base + '/**/*.rs', recursive=True):
        rel = os.path.relpath(f, base)[:-3]
        mod = rel.split('/')[0]
        if mod in ('lib', 'main', 'mod', 'tests') or rel.endswith('tests'):
            continue
        with open(f, encoding='utf-8') as fh:
            txt = fh.read().split('#[cfg(test)]')[0]
        txt = '\n'.join(l for l in txt.split('\n') if not l.strip().startswith('//'))
        files.setdefault(mod, set()).update(d for d in re.findall(r'crate::(\w+)', txt) if d != mod)
    return {m: {d for d in ds if d in files} for m, ds in files.items()}


def pairs(g):
    return sorted({tuple(sorted((a, b))) for a, ds in g.items() for b in ds if a in g[b]})


def longer_cycles(g):
    """Strongly connected groups of modules (Tarjan), less every edge of a pair: what is left
    in a group of three or more is a cycle through three or more modules."""
    g = {a: {b for b in ds if a not in g[b]} for a, ds in g.items()}
    index, low, stack, on, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
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
            if len(group) > 2:
                groups.append(sorted(group))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return sorted(groups)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    found = False
    for base in sys.argv[1:]:
        base = base.rstrip('/')
        if not os.path.isdir(base):
            sys.exit(f'{base}: not a directory')
        g = graph(base)
        p, longer = pairs(g), longer_cycles(g)
        name = os.path.basename(os.path.dirname(os.path.abspath(base)))
        print(name, len(p), p)
        if longer:
            print(name, 'cycles through more modules:', longer)
        found = found or bool(p) or bool(longer)
    sys.exit(1 if found else 0)


if __name__ == '__main__':
    main()
