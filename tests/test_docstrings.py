"""Every public function and method of devices/, ingest/ and mapping/ has a docstring (issue 17).

Pure: an AST walk over the source files, nothing imported. Public means a function at module
level, or a method of a module-level class, whose name does not start with ``_``, in a class
whose name does not start with ``_`` either (a private class's methods, such as a logging
filter or a psycopg dumper overriding a library hook, are not part of the packages' API).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("devices", "ingest", "mapping")

# Overrides of a library's hook whose contract is the library's documentation, not ours.
# Keep this list small; each entry says why. ("path::Class.method": reason)
EXEMPT = {
    "devices/settings.py::ServiceSettings.settings_customise_sources": (
        "pydantic-settings' hook: returns the settings sources in priority order"
    ),
}


def public_functions(root: Path) -> dict[str, tuple[int, bool]]:
    """``{"path::Qual.name": (line, has a docstring)}`` for every public function and method
    of ``PACKAGES`` under ``root`` (see the module docstring); an empty or blank docstring
    counts as none. Raises SyntaxError for a file that does not parse."""
    found: dict[str, tuple[int, bool]] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
            for node in tree.body:
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    members = [(node.name, node)]
                elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                    members = [
                        (f"{node.name}.{child.name}", child)
                        for child in node.body
                        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                    ]
                else:
                    continue
                for name, function in members:
                    if function.name.startswith("_"):
                        continue
                    doc = ast.get_docstring(function)
                    found[f"{relative}::{name}"] = (function.lineno, bool(doc and doc.strip()))
    return found


def test_every_public_function_says_what_it_does() -> None:
    functions = public_functions(ROOT)
    assert len(functions) > 200, f"the walk found only {len(functions)} functions: wrong root?"
    missing = sorted(
        (key.split("::")[0], line, key.split("::")[1])
        for key, (line, documented) in functions.items()
        if not documented and key not in EXEMPT
    )
    stale = sorted(set(EXEMPT) - set(functions))
    report = []
    if missing:
        report.append(
            f"{len(missing)} public functions have no docstring. Say what each takes and returns"
            " (types, columns, lengths), the units (seconds, metres, degrees, bytes), what it"
            " raises, and the source of any format or formula (style: ingest/validate.py):"
        )
        report += [f"  {path}:{line}: {name}" for path, line, name in missing]
    if stale:
        report.append("EXEMPT names functions that are no longer there; remove them:")
        report += [f"  {key}" for key in stale]
    assert not report, "\n".join(report)
