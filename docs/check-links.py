#!/usr/bin/env python3
"""Checks that every relative link in README.md and docs/*.md points to an existing
file and, when it has an anchor, to a heading of that file (GitHub's slugs)."""
import glob, os, re, sys
# Run from anywhere: python3 docs/check-links.py [repo root]
root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
os.chdir(root)

def slugs(path):
    out, seen, fence = set(), {}, False
    for line in open(path, encoding='utf-8'):
        if line.startswith('```'):
            fence = not fence
            continue
        m = None if fence else re.match(r'^(#{1,6})\s+(.*?)\s*#*\s*$', line)
        if not m:
            continue
        s = m.group(2).strip().lower()
        s = re.sub(r'[^\w\- ]', '', s)   # drop punctuation (backticks, colons, commas...)
        s = s.replace(' ', '-')
        n = seen.get(s, 0); seen[s] = n + 1
        out.add(s if n == 0 else f'{s}-{n}')
    return out

bad = 0
files = ['README.md'] + sorted(glob.glob('docs/*.md'))
for f in files:
    text, fence = [], False
    for line in open(f, encoding='utf-8'):
        if line.startswith('```'):
            fence = not fence; continue
        if not fence:
            text.append(line)
    body = re.sub(r'`[^`\n]*`', '', ''.join(text))  # inline code is not a link
    for target in re.findall(r'\]\(([^)\s]+)\)', body):
        if re.match(r'[a-z]+://', target) or target.startswith('mailto:'):
            continue
        path, _, anchor = target.partition('#')
        dest = os.path.normpath(os.path.join(os.path.dirname(f), path)) if path else f
        if not os.path.exists(dest):
            print(f'{f}: {target}: no such file'); bad += 1; continue
        if anchor and anchor not in slugs(dest):
            print(f'{f}: {target}: no such anchor in {dest}'); bad += 1
print(f'{len(files)} files checked, {bad} broken link(s)')
sys.exit(1 if bad else 0)
