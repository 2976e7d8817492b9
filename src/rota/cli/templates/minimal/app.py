"""__PROJECT__: a rota app. A job does the routine work; an agent writes what the job cannot.

The agent's model is `scripted:greeter`, an offline stand-in that always answers the same.
Set GREETER_MODEL=anthropic:claude-sonnet-4-5 (and ANTHROPIC_API_KEY) to ask a real model.
"""

from __future__ import annotations

import os
from typing import Any

from rota import Agent, App
from rota.testing import register_scripted, say

app = App(os.environ.get("ROTA_DATABASE_URL"))  # default: sqlite:///rota.db


@app.job(retries=2)
def greet(ctx: Any, payload: dict[str, Any]) -> dict[str, str]:
    """The deterministic path: no model involved."""
    return {"greeting": f"hello, {payload.get('name', 'world')}"}


register_scripted("greeter", script=[say("Hello! Glad you are here.")])
greeter = Agent(
    name="greeter",
    model=os.environ.get("GREETER_MODEL", "scripted:greeter"),
    instructions="Write a one-line friendly greeting for the person named in the task.",
    max_steps=2,
)
app.agent(greeter)
