#!/usr/bin/env python3
"""House structure checks (DEVELOPERS.md): no import cycle between files of src/ (through
`use crate::`/`super::` imports or qualified paths), no function over 150 lines, no
`clippy::too_many_arguments` allowance, no discarded lifecycle transition.
Usage: .ci/structure.py [repo]"""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else '.'
src = os.path.join(root, 'src')
files = {}
for d, _, fs in os.walk(src):
    for f in fs:
        if f.endswith('.rs'):
            p = os.path.join(d, f)
            rel = os.path.relpath(p, src)[:-3]
            parts = rel.split('/')
            if parts[-1] in ('mod', 'lib', 'main'):
                parts = parts[:-1]
            files[tuple(parts)] = p
def resolve(path):
    # longest prefix of path that is a module file
    for i in range(len(path), 0, -1):
        if tuple(path[:i]) in files:
            return tuple(path[:i])
    return None
def strip_comments(t):
    t = re.sub(r'/\*.*?\*/', '', t, flags=re.S)
    return '\n'.join(l.split('//')[0] for l in t.split('\n'))
edges = {}
for mod, p in files.items():
    text = strip_comments(open(p).read())
    # drop #[cfg(test)] mod tests { ... } at end (heuristic: from '#[cfg(test)]' to end)
    i = text.find('#[cfg(test)]')
    if i >= 0:
        text = text[:i]
    deps = set()
    parent = mod
    def expand(prefix, body):
        # body like a::b::{c, d::e} -> list of paths
        out = []
        body = body.strip()
        m = re.match(r'^([\w:]*?)(::)?\{(.*)\}$', body, re.S)
        if m:
            head = [x for x in m.group(1).split('::') if x]
            inner = m.group(3)
            depth = 0; cur = ''; items = []
            for ch in inner:
                if ch == '{': depth += 1
                if ch == '}': depth -= 1
                if ch == ',' and depth == 0:
                    items.append(cur); cur = ''
                else:
                    cur += ch
            items.append(cur)
            for it in items:
                if it.strip():
                    out += expand(prefix + head, it)
            return out
        segs = [s.strip().split(' as ')[0].strip() for s in body.split('::')]
        return [prefix + [s for s in segs if s and s != '*' and s != 'self']]
    for m in re.finditer(r'\buse\s+((?:crate|super|self)[^;]*);', text, re.S):
        for path in expand([], m.group(1).replace('\n', ' ')):
            deps.add(tuple(path))
    for m in re.finditer(r'\b((?:crate|super)(?:::\w+)+)', text):
        deps.add(tuple(m.group(1).split('::')))
    for path in deps:
        base = list(parent)
        path = list(path)
        if path[0] == 'crate':
            base = []; path = path[1:]
        else:
            while path and path[0] in ('super', 'self'):
                if path[0] == 'super': base = base[:-1]
                path = path[1:]
        r = resolve(base + path)
        if r is not None and r != mod and r != ():
            # importing an ancestor's mod.rs item defined there counts
            edges.setdefault(mod, set()).add(r)
# cycles: Tarjan SCC
index = {}; low = {}; stack = []; on = set(); sccs = []; c = [0]
sys.setrecursionlimit(10000)
def sc(v):
    index[v] = low[v] = c[0]; c[0] += 1; stack.append(v); on.add(v)
    for w in edges.get(v, ()):
        if w not in index:
            sc(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(comp)
for v in files:
    if v not in index: sc(v)
bad = 0
for comp in sccs:
    bad += 1
    names = sorted('/'.join(x) or 'lib' for x in comp)
    print('import cycle among:', ', '.join(names))
    for a in comp:
        for b in edges.get(a, ()):
            if b in comp:
                print('   ', '/'.join(a), '->', '/'.join(b))
# function lengths
for mod, p in sorted(files.items()):
    lines = open(p).read().split('\n')
    for i, l in enumerate(lines):
        if re.match(r'^\s*(pub(\([\w:]+\))?\s+)?(async\s+)?(const\s+)?(unsafe\s+)?fn\s+\w+', l):
            indent = len(l) - len(l.lstrip())
            # find closing brace at same indent
            if l.rstrip().endswith(';'):
                continue
            for j in range(i + 1, len(lines)):
                lj = lines[j]
                if lj.strip() == '}' and len(lj) - len(lj.lstrip()) == indent:
                    n = j - i + 1
                    if n > 150:
                        bad += 1
                        print(f'{p}:{i+1}: function of {n} lines: {l.strip()[:60]}')
                    break
for mod, p in sorted(files.items()):
    for i, l in enumerate(open(p).read().split('\n')):
        if 'clippy::too_many_arguments' in l:
            bad += 1; print(f'{p}:{i+1}: {l.strip()}')
        if re.search(r'let _ = .*transition', l):
            bad += 1; print(f'{p}:{i+1}: discarded transition: {l.strip()}')
print('structure: %d problem(s)' % bad)
sys.exit(1 if bad else 0)
