#!/usr/bin/env python3
"""Lists the pairs of modules of one crate that import each other (a cycle between two modules).

Usage: scripts/module-cycles.py CRATE_SRC_DIR...   (e.g. relay/src)

A module is a top-level file or directory of src/ (src/dissect/flow.rs belongs to `dissect`);
lib.rs, main.rs, mod.rs files at the top and test modules are not modules here. Only code counts:
a file is read up to its first `#[cfg(test)]`, lines that start with `//` are dropped, and every
`crate::NAME` left is an import of module NAME. Prints `CRATE N [pairs]` per directory and exits
1 if any directory has a pair. The tests `module_graph` of relay, tap and scenarios run it.
"""
import glob
import os
import re
import sys


def pairs(base):
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
    return sorted({tuple(sorted((a, b))) for a, ds in files.items() for b in ds if b in files and a in files[b]})


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    found = False
    for base in sys.argv[1:]:
        base = base.rstrip('/')
        if not os.path.isdir(base):
            sys.exit(f'{base}: not a directory')
        p = pairs(base)
        print(os.path.basename(os.path.dirname(os.path.abspath(base))), len(p), p)
        found = found or bool(p)
    sys.exit(1 if found else 0)


if __name__ == '__main__':
    main()
