#!/usr/bin/env python3
"""Assembles sql/fractality--0.4.0--0.5.0.sql from the handwritten sections in
dev/upgrade-0.5.0/*.sql (in file-name order) and pieces of the current sources, so that the
upgrade creates exactly what a fresh install does. Directives in a section:
  --@ pgrx SYMBOL                 the CREATE FUNCTION of a pgrx wrapper, from the schema output
  --@ file[!] NAME START||END     sql/NAME from the line START up to END (or the end); with !,
                                  CREATE FUNCTION/VIEW/AGGREGATE become CREATE OR REPLACE
Usage: cargo pgrx schema pg15 -o /tmp/schema.sql && python3 dev/gen_upgrade.py /tmp/schema.sql
tests/client/tests/upgrade.rs compares the upgraded catalog with a fresh install's."""
import re, sys, glob, os
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
schema = open(sys.argv[1]).read()

def sql_file(name):
    return open(os.path.join(ROOT, 'sql', name)).read()

def between(text, start, end):
    i = text.index(start)
    j = text.index(end, i) if end else len(text)
    return text[i:j]

def pgrx_function(sym):
    """The CREATE FUNCTION block of a pgrx wrapper symbol from the schema output."""
    blocks = schema.split('/* <begin connected objects> */')
    for b in blocks:
        if f"'{sym}'" in b and 'CREATE' in b:
            body = b.split('/* </end connected objects> */')[0]
            lines = [l for l in body.strip().splitlines() if not l.startswith('-- ')]
            text = '\n'.join(lines).strip()
            # qualify the name
            text = re.sub(r'^CREATE\s+FUNCTION\s+(fractality\.)?"?([a-z_]+)"?\(', r'CREATE FUNCTION fractality."\2"(', text)
            return text
    raise SystemExit(f'no function {sym} in the schema output')

parts = []
for path in sorted(glob.glob(os.path.join(ROOT, 'dev', 'upgrade-0.5.0', '*.sql'))):
    t = open(path).read()
    # directives: --@ pgrx SYMBOL ; --@ file NAME START_MARKER||END_MARKER
    out = []
    for line in t.splitlines():
        m = re.match(r'^--@ pgrx (\S+)$', line)
        if m:
            out.append(pgrx_function(m.group(1)))
            continue
        m = re.match(r'^--@ file(!?) (\S+) (.*)\|\|(.*)$', line)
        if m:
            piece = between(sql_file(m.group(2)), m.group(3), m.group(4) or None).rstrip('\n')
            if m.group(1):
                piece = piece.replace('CREATE FUNCTION', 'CREATE OR REPLACE FUNCTION')
                piece = piece.replace('CREATE VIEW', 'CREATE OR REPLACE VIEW')
                piece = piece.replace('CREATE AGGREGATE', 'CREATE OR REPLACE AGGREGATE')
            out.append(piece)
            continue
        out.append(line)
    parts.append('\n'.join(out).rstrip('\n') + '\n')
open(os.path.join(ROOT, 'sql/fractality--0.4.0--0.5.0.sql'), 'w').write('\n'.join(parts))
