"""Parses a generated warehouse script, statement by statement, as the SQL of
one dialect with sqlglot (https://github.com/tobymao/sqlglot), and says what
it checked.

    python3 sql_check.py DIALECT < script.sql

Prints one JSON object: `checked` (statements sqlglot parsed into a statement
of its dialect), `unchecked` (units it cannot check, each with its kind:
procedural bodies, client commands, statements sqlglot only knows as an
opaque command) and `failed` (statements that do not parse, with the error).

Before parsing, Oracle's length semantics (`VARCHAR2(4000 CHAR)`) are
written without `CHAR`: sqlglot does not know them.
"""

import json
import logging
import re
import sys

import sqlglot
from sqlglot import exp

logging.getLogger("sqlglot").setLevel(logging.ERROR)


def units(text, dialect):
    """The script's units: statements, procedural blocks, client commands."""
    lines = text.split("\n")
    i = 0
    current = []
    dollar = None  # the open dollar quote, if any
    block = False  # inside an Oracle PL/SQL unit (ends with a line "/")
    while i < len(lines):
        line = lines[i]
        i += 1
        stripped = line.strip()
        if not current:
            if not stripped or stripped.startswith("--"):
                continue
            if stripped.startswith("\\"):
                yield ("psql meta-command", stripped)
                continue
            if re.match(r"(?i)^WHENEVER\b", stripped):
                yield ("SQL*Plus command", stripped)
                continue
            if dialect == "oracle" and (
                re.match(r"(?i)^(BEGIN|DECLARE)\b", stripped)
                or re.match(r"(?i)^CREATE\s+OR\s+REPLACE\s+(PROCEDURE|FUNCTION)\b.*\bAS\s*$", stripped)
            ):
                block = True
        if stripped.startswith("--") and not block and dollar is None:
            continue
        current.append(line)
        if block:
            if stripped == "/":
                yield ("PL/SQL unit", "\n".join(current[:-1]))
                current = []
                block = False
            continue
        for tag in re.findall(r"\$[A-Za-z_]*\$", line):
            dollar = None if dollar == tag else (dollar or tag)
        if dollar is None and stripped.endswith(";"):
            statement = "\n".join(current)
            current = []
            if re.search(r"\$[A-Za-z_]*\$", statement):
                yield ("procedural body (PL/pgSQL)", statement)
            else:
                yield ("statement", statement)
    if current:
        yield ("statement", "\n".join(current))


def main():
    dialect = sys.argv[1]
    text = sys.stdin.read()
    checked, unchecked, failed = [], [], []
    for kind, unit in units(text, dialect):
        first = unit.strip().split("\n")[0][:120]
        if kind != "statement":
            unchecked.append({"kind": kind, "statement": first, "text": unit})
            continue
        sql = re.sub(r"\((\d+) CHAR\)", r"(\1)", unit) if dialect == "oracle" else unit
        try:
            parsed = sqlglot.parse(sql, read=dialect, error_level=sqlglot.ErrorLevel.RAISE)
        except Exception as error:  # sqlglot's errors have no common base
            failed.append({"statement": first, "error": str(error).split("\n")[0]})
            continue
        parsed = [p for p in parsed if p is not None]
        if any(isinstance(p, exp.Command) for p in parsed):
            keyword = unit.strip().split()[0].upper()
            unchecked.append(
                {"kind": f"{keyword} (sqlglot: an opaque command)", "statement": first, "text": unit}
            )
        else:
            checked.append(first)
    json.dump({"checked": checked, "unchecked": unchecked, "failed": failed}, sys.stdout)


if __name__ == "__main__":
    main()
