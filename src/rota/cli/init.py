"""`rota init [DIR] [--template minimal|billing|routines]`: scaffold a project that runs as
is (app.py, routines/, plans/, .env.example, a README with the next three commands and a
test file using rota.testing). It never overwrites a file: it refuses, naming them."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from .common import ExitCode, fail, out, print_json

TEMPLATES = Path(__file__).parent / "templates"
SHARED = "shared"  # copied into every project, under the template's own files


class Template(StrEnum):
    """The project templates, each a folder of templates/."""

    MINIMAL = "minimal"
    BILLING = "billing"
    ROUTINES = "routines"


# The third of the README's next three commands (after `pytest` and `rota dev`).
THIRD_COMMAND = {
    Template.MINIMAL: """rota run greet --payload '{"name": "Ada"}'    # in another terminal""",
    Template.BILLING: "rota run bill --payload "
    """'{"type": "plan_changed", "customer": "acme", "plan": "pro", "seats": 2}'""",
    Template.ROUTINES: "rota routines validate        # check the routine files",
}


def init(
    directory: Annotated[
        Path, typer.Argument(help="The project folder (created if missing).", file_okay=False)
    ] = Path("."),
    template: Annotated[
        Template, typer.Option("--template", "-t", case_sensitive=False, help="What to start from.")
    ] = Template.MINIMAL,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a rota project: app.py, routines/, plans/, .env.example, README.md and
    test_app.py. Refuses to overwrite existing files."""
    files = project_files(template)
    clashes = sorted(name for name in files if (directory / name).exists())
    if clashes:
        fail(
            f"{directory} already has {', '.join(clashes)}; rota init never overwrites "
            "files: pick another folder or move them away",
            code=ExitCode.USAGE,
        )
    values = {
        "__PROJECT__": directory.resolve().name,
        "__TEMPLATE__": template.value,
        "__THIRD_COMMAND__": THIRD_COMMAND[template],
    }
    for name, source in files.items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text(encoding="utf-8")
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        target.write_text(text, encoding="utf-8")
    (directory / "routines").mkdir(exist_ok=True)  # also for the templates without a routine
    created = sorted(files)
    if as_json:
        print_json({"directory": str(directory), "template": template.value, "files": created})
        return
    out.print(f"created a {template.value} rota project in {directory}: {', '.join(created)}")
    out.print(f"next: cd {directory} && pytest test_app.py && rota dev  (see README.md)")


def project_files(template: Template) -> dict[str, Path]:
    """Target name (relative to the project) -> template file, the template's own winning
    over the shared ones; `dot-x` becomes `.x`."""
    files: dict[str, Path] = {}
    for folder in (TEMPLATES / SHARED, TEMPLATES / template.value):
        for source in sorted(folder.rglob("*")):
            if source.is_file() and "__pycache__" not in source.parts:
                relative = source.relative_to(folder)
                name = relative.name.removeprefix("dot-")
                name = f".{name}" if relative.name.startswith("dot-") else name
                files[str(relative.with_name(name))] = source
    return files
