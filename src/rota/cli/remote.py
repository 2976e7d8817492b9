"""`rota whoami`: talk to a remote rota server with an API token.

The server is `--server` (or ROTA_SERVER), the token `--token` (or ROTA_TOKEN; prefer the
variable: argv is visible to other users). More remote commands arrive with the HTTP API of
the dashboard; they will share `get`.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import typer

from .common import ExitCode, JsonFlag, fail, print_json

Server = Annotated[
    str,
    typer.Option("--server", envvar="ROTA_SERVER", help="e.g. https://rota.internal:8800"),
]
Token = Annotated[
    str | None,
    typer.Option("--token", envvar="ROTA_TOKEN", help="An API token (rota tokens create)."),
]


def get(server: str, token: str | None, path: str) -> Any:
    """GET a JSON resource; an API refusal becomes a one-line error naming the reason."""
    if not token:
        fail(
            "no API token: set ROTA_TOKEN (make one with `rota tokens create PRINCIPAL`)",
            code=ExitCode.USAGE,
        )
    try:
        answer = httpx.get(
            server.rstrip("/") + path, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
    except httpx.HTTPError as exc:
        fail(f"cannot reach {server}: {exc}")
    if answer.status_code >= 400:
        try:
            message = answer.json()["message"]
        except (ValueError, KeyError, TypeError):
            message = answer.text[:200]
        fail(f"{server} answered {answer.status_code}: {message}", code=_code(answer.status_code))
    return answer.json()


def _code(status: int) -> ExitCode:
    """An HTTP refusal as a row of the exit-code table."""
    if status in (401, 403):
        return ExitCode.REFUSED
    if status == 404:
        return ExitCode.NOT_FOUND
    return ExitCode.UNAVAILABLE if status >= 500 else ExitCode.USAGE


def whoami(
    server: Server = "http://127.0.0.1:8800", token: Token = None, as_json: JsonFlag = False
) -> None:
    """Print the principal your API token stands for, as the server sees it (as JSON,
    always; --json is accepted for uniformity)."""
    print_json(get(server, token, "/api/whoami"))
