"""__PROJECT__: agents defined as routine files (`routines/*.md`), beside Python code that
registers what those files may name: tools, principals, models.

The routine's model is `scripted:digest`, an offline stand-in. Edit `model:` in the routine
file (e.g. anthropic:claude-sonnet-4-5, with ANTHROPIC_API_KEY set) to ask a real model.
"""

from __future__ import annotations

import os

from rota import App, tool
from rota.testing import answer, call, register_scripted

app = App(os.environ.get("ROTA_DATABASE_URL"))  # default: sqlite:///rota.db
app.principal("svc-digest", scopes=["notes:read"])

NOTES = ["shipped the importer", "fixed the retry bug", "wrote the runbook"]


@tool(scopes=["notes:read"], read_only=True)
def recent_notes() -> list[str]:
    """This week's team notes, newest last."""
    return NOTES


app.routines.tool(recent_notes)  # routine files may now name it in `tools:`
register_scripted(
    "digest",
    script=[call("recent_notes"), answer("3 notes: importer shipped, retry bug fixed, runbook")],
)
