#!/usr/bin/env python3
"""Generates Sources/OsqueryTables/ForeignTableSpecs.swift from an osquery
source tree: the tables osquery registers under --enable_foreign on Linux.

Usage: scripts/gen-foreign-tables.py [--revision R] <osquery-source-dir> [output.swift]
(--revision names the osquery commit the specs come from, for the header.)

osquery's specs/CMakeLists.txt gives each platform-dependent spec its
platforms; on Linux the specs without "linux" are its foreign tables (the
ones generated with tools/codegen's foreign template, whose generate returns
no rows). Their .table files are read with the same vocabulary osquery's
gentable.py gives them, and only what the foreign template uses is kept:
the table name and aliases, and each column's name, type, options and
aliases. Columns of extended_schema for other platforms are hidden, as
gentable does when it runs on Linux.
"""

import os
import re
import sys

# Options of osquery's Linux build that are on by default (cmake/options.cmake);
# OSQUERY_BUILD_ETW exists only in Windows builds, so its tables are not
# registered on Linux at all, foreign or not.
LINUX_BUILD_OPTIONS = {"OSQUERY_BUILD_AWS", "OSQUERY_BUILD_DPKG"}

PLATFORM = "linux"

# gentable.py's column types, by the name our engine uses.
TYPES = {
    "TEXT": "TEXT", "DATE": "TEXT", "DATETIME": "TEXT", "INTEGER": "INTEGER", "BIGINT": "BIGINT",
    "UNSIGNED_BIGINT": "UNSIGNED_BIGINT", "DOUBLE": "DOUBLE", "BLOB": "BLOB",
}
COLUMN_OPTIONS = ["index", "required", "additional", "optimized", "hidden", "collate"]
COLLATIONS = ["binary", "nocase", "rtrim", "version", "version_arch", "version_dpkg", "version_rhel"]


def platform_dependent_specs(cmake_text):
    """(spec path, [platforms]) of every platform-dependent spec a Linux build lists."""
    specs = []
    conditions = []
    collecting = False
    for raw in cmake_text.splitlines():
        line = raw.strip()
        opened = re.match(r"if\((\w+)\)$", line)
        if opened:
            conditions.append(opened.group(1))
            continue
        if re.match(r"if\(", line):
            conditions.append(None)
            continue
        if line.startswith("endif("):
            if conditions:
                conditions.pop()
            continue
        if re.match(r"(set\(|list\(APPEND )platform_dependent_spec_files\b", line):
            collecting = all(c is None or c in LINUX_BUILD_OPTIONS for c in conditions)
            continue
        if collecting:
            if line == ")":
                collecting = False
                continue
            entry = re.match(r'"([^":]+):([a-z,]+)"$', line)
            if entry:
                specs.append((entry.group(1), entry.group(2).split(",")))
    return specs


def denylisted(specs_dir, name):
    path = os.path.join(specs_dir, "denylist")
    if not os.path.exists(path):
        return False
    for line in open(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if (len(parts) == 2 and parts[0] == PLATFORM and parts[1] == name) or (len(parts) == 1 and parts[0] == name):
            return True
    return False


class Column:
    def __init__(self, name, col_type, description="", aliases=[], platforms=[], notes="", **kwargs):
        self.name = name
        self.type = col_type
        self.aliases = list(aliases)
        self.options = kwargs


class ForeignKey:
    def __init__(self, **kwargs):
        pass


def read_spec(path, attributes=None):
    """The table a .table file declares: (name, aliases, [Column]). The
    attributes it names are added to `attributes` (a dict) when given."""
    state = {"name": None, "aliases": [], "schema": []}

    def table_name(name, aliases=[]):
        state["name"] = name
        state["aliases"] = list(aliases)

    def schema(items):
        state["schema"] = list(items)

    def extended_schema(platforms, items):
        for item in items:
            if isinstance(item, Column) and PLATFORM not in platforms:
                item.options["hidden"] = True
            state["schema"].append(item)

    def ignore(*args, **kwargs):
        pass

    def table_attributes(**kwargs):
        if attributes is not None:
            attributes.update(kwargs)

    names = {
        "table_name": table_name, "schema": schema, "extended_schema": extended_schema,
        "Column": Column, "ForeignKey": ForeignKey,
        "description": ignore, "examples": ignore, "notes": ignore, "attributes": table_attributes,
        "implementation": ignore, "fuzz_paths": ignore,
        "WINDOWS": ["windows", "win32", "cygwin"], "LINUX": ["linux"], "POSIX": ["linux", "darwin"],
        "DARWIN": ["darwin"],
    }
    for t in TYPES:
        names[t] = t
    with open(path) as f:
        exec(compile(f.read(), path, "exec"), names)
    columns = [c for c in state["schema"] if isinstance(c, Column)]
    return state["name"], state["aliases"], columns


def column_text(column):
    if column.type not in TYPES:
        raise SystemExit("unknown column type %r" % column.type)
    words = [column.name, TYPES[column.type]]
    # As gentable: an option counts when it is named, whatever its value.
    for option in COLUMN_OPTIONS:
        if option not in column.options:
            continue
        if option == "collate":
            collation = str(column.options["collate"]).lower()
            if collation not in COLLATIONS:
                raise SystemExit("unknown collation %r on %s" % (collation, column.name))
            words.append("collate_" + collation)
        else:
            words.append(option)
    return " ".join(words)


def swift_string(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main():
    args = sys.argv[1:]
    revision = None
    if len(args) >= 2 and args[0] == "--revision":
        revision = args[1]
        args = args[2:]
    if len(args) not in (1, 2):
        raise SystemExit(__doc__)
    source = args[0]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    output = args[1] if len(args) == 2 else os.path.join(here, "Sources/OsqueryTables/ForeignTableSpecs.swift")
    specs_dir = os.path.join(source, "specs")
    with open(os.path.join(specs_dir, "CMakeLists.txt")) as f:
        cmake = f.read()

    tables = []
    for spec, platforms in platform_dependent_specs(cmake):
        if PLATFORM in platforms:
            continue
        name, aliases, columns = read_spec(os.path.join(specs_dir, spec))
        if denylisted(specs_dir, name):
            continue
        column_aliases = [(alias, c.name) for c in columns for alias in c.aliases]
        tables.append((name, platforms, aliases, columns, column_aliases))
    tables.sort(key=lambda t: t[0])

    lines = [
        "// Generated by scripts/gen-foreign-tables.py from osquery's specs"
        + (" at %s" % revision if revision else "") + "; do not edit.",
        "",
        "/// osquery's foreign tables on Linux (specs/CMakeLists.txt lists them for",
        "/// other platforms only): registered with `--enable_foreign`, no rows.",
        "/// Columns are `name TYPE option...`, joined by \", \".",
        "let foreignTableSpecs: [ForeignTableSpec] = [",
    ]
    for name, platforms, aliases, columns, column_aliases in tables:
        args = [swift_string(name), swift_string(",".join(platforms)),
                swift_string(", ".join(column_text(c) for c in columns))]
        if aliases:
            args.append("aliases: [" + ", ".join(swift_string(a) for a in aliases) + "]")
        if column_aliases:
            args.append("columnAliases: " + swift_string(", ".join("%s %s" % pair for pair in column_aliases)))
        lines.append("    ForeignTableSpec(" + ", ".join(args) + "),")
    lines.append("]")
    with open(output, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("%d foreign tables written to %s" % (len(tables), output))


if __name__ == "__main__":
    main()
