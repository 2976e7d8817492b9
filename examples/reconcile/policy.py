"""A deterministic stand-in for the reconciling model, so the example runs offline.

It does what the instructions ask, turn by turn, from what it reads in the conversation. It
learns the CSV's columns from `open_csv`'s result and maps them by meaning (`email_address`
is the email, `full_name` the name), so a renamed column does not break it. When no column
can be the email it gives up, and says so in its answer: the success check then refuses the
answer, and the run fails once `max_steps` are spent. RECONCILE_MODEL=provider:name replaces
it with a real model; the tools and the check stay the same.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rota.agents.types import ModelRequest
from rota.testing import Reply, ScriptedModel, answer, call

SYNONYMS = {
    "email": ("email", "e-mail", "email_address", "mail", "contact_email"),
    "name": ("name", "full_name", "customer_name", "display_name"),
    "country": ("country", "country_code", "nation", "iso_country"),
}
ALREADY = re.compile(r"already customer (\d+)")


def scripted_reconciler() -> ScriptedModel:
    return ScriptedModel("csv-reconciler", fn=_decide, tokens=(900, 180))


def column_map(columns: list[str]) -> dict[str, str]:
    """Which CSV column holds each field, by name or a known synonym."""
    found: dict[str, str] = {}
    for field, names in SYNONYMS.items():
        for column in columns:
            if column.strip().lower() in names:
                found[field] = column
                break
    return found


def _decide(request: ModelRequest, turn: int) -> Any:
    task = json.loads(request.messages[0].text)
    done = _calls(request)
    opened = _last(done, "open_csv")
    if opened is None:
        return call("open_csv", path=task["csv"])
    import_id, columns = opened["import_id"], opened["columns"]
    mapping = column_map(columns)
    if "email" not in mapping:  # nothing to reconcile on: give up, and say why
        return _answer(task, import_id, done, report=f"no email column among {columns}")
    rows = _last(done, "read_rows")
    if rows is None and opened["rows"]:
        return call("read_rows", import_id=import_id, start=1, count=opened["rows"])
    return _work(task, import_id, mapping, rows or [], done)


def _work(
    task: dict[str, Any],
    import_id: int,
    mapping: dict[str, str],
    rows: list[dict[str, Any]],
    done: list[tuple[str, dict[str, Any], Any, bool]],
) -> Reply:
    records = [
        (r["row"], *(str(r.get(mapping.get(f, ""), "") or "").strip() for f in SYNONYMS))
        for r in rows
    ]
    flagged = {a["row"] for n, a, _, err in done if n == "flag_anomaly" and not err}
    saved = {a["row"]: res for n, a, res, err in done if n == "save_customer" and not err}
    looked = {a["email"].lower(): res for n, a, res, err in done if n == "find_customer"}
    refused = {a["row"]: str(res) for n, a, res, err in done if n == "save_customer" and err}
    problems = {row: _problem(email, country) for row, email, _, country in records}
    todo: list[Reply] = [
        call("flag_anomaly", import_id=import_id, row=row, reason=why)
        for row, why in problems.items()
        if why and row not in flagged
    ]
    good = [r for r in records if not problems[r[0]]]
    unknown = sorted({r[1].lower() for r in good} - set(looked))
    todo += [call("find_customer", email=e) for e in unknown]
    if todo:
        return _sum(todo)
    for row, email, name, country in good:
        if row in saved:
            continue
        target = _target(row, email, good, saved, looked, refused.get(row))
        if target is False:
            continue  # a later duplicate: it waits for its first row to be saved
        args = {"import_id": import_id, "row": row, "email": email, "name": name}
        todo.append(call("save_customer", **args, country=country, merge_into=target))
    if todo:
        return _sum(todo)
    if _last(done, "write_report") is None:
        text = _report(task["csv"], mapping, done)
        return call("write_report", import_id=import_id, text=text)
    return _answer(task, import_id, done, report=str(_last(done, "write_report")))


def _target(
    row: int,
    email: str,
    good: list[tuple[int, str, str, str]],
    saved: dict[int, Any],
    looked: dict[str, Any],
    refusal: str | None,
) -> int | bool | None:
    """The customer to merge row `row` into: the one a refusal names, the one on file, or
    the one an earlier row of this file became; None for a new customer; False while that
    earlier row is not saved yet."""
    if refusal is not None and (m := ALREADY.search(refusal)):
        return int(m.group(1))
    on_file = looked.get(email.lower(), {})
    if on_file.get("found"):
        return int(on_file["customer"]["id"])
    earlier = [r for r, e, _, _ in good if r < row and e.lower() == email.lower()]
    if not earlier:
        return None
    first = saved.get(earlier[0])
    return int(first["customer_id"]) if first is not None else False


def _problem(email: str, country: str) -> str | None:
    if "@" not in email or "." not in email.partition("@")[2]:
        return f"email {email!r} is not an email address"
    if not re.fullmatch(r"[A-Z]{2}", country):
        return f"country {country!r} is not a two-letter ISO code"
    return None


def _answer(
    task: dict[str, Any],
    import_id: int,
    done: list[tuple[str, dict[str, Any], Any, bool]],
    report: str,
) -> Reply:
    statuses = [
        res["status"]
        for n, _, res, err in done
        if n in ("save_customer", "flag_anomaly") and not err
    ]
    return answer(
        {
            "import_id": import_id,
            "csv": task["csv"],
            "inserted": statuses.count("inserted"),
            "merged": statuses.count("merged"),
            "flagged": statuses.count("flagged"),
            "report": report,
        }
    )


def _report(
    csv: str, mapping: dict[str, str], done: list[tuple[str, dict[str, Any], Any, bool]]
) -> str:
    lines = [
        f"# Import of {csv}",
        "",
        "Columns: " + ", ".join(f"{f} <- {c}" for f, c in mapping.items()),
    ]
    for name, args, result, err in done:
        if name == "save_customer" and not err:
            lines.append(
                f"- row {args['row']}: {result['status']} (customer {result['customer_id']})"
            )
        elif name == "flag_anomaly" and not err:
            lines.append(f"- row {args['row']}: flagged: {args['reason']}")
    return "\n".join(lines) + "\n"


def _sum(replies: list[Reply]) -> Reply:
    total = replies[0]
    for reply in replies[1:]:
        total = total + reply
    return total


def _last(done: list[tuple[str, dict[str, Any], Any, bool]], tool: str) -> Any:
    found = [res for name, _, res, err in done if name == tool and not err]
    return found[-1] if found else None


def _calls(request: ModelRequest) -> list[tuple[str, dict[str, Any], Any, bool]]:
    """(tool, arguments, result, is_error) of every tool call so far, in order."""
    calls = {c.id: c for m in request.messages for c in m.tool_calls}
    done = []
    for message in request.messages:
        for result in message.tool_results:
            made = calls.get(result.call_id)
            if made is None:
                continue
            try:
                value: Any = json.loads(result.content)
            except ValueError:
                value = result.content
            done.append((made.name, made.arguments, value, result.is_error))
    return done
