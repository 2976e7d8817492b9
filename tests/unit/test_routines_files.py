"""Routine files: every bad-file case gives the exact `file:line:column: message`, all
problems of all files at once, good files load beside bad ones, the JSON Schema is published,
and (a property) nothing a file holds makes the loader raise anything but RoutineError."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rota.routines import Known, RoutineError, json_schema, load_dir, load_text
from rota.routines.changes import changes, look
from rota.routines.spec import FIELDS

KNOWN = Known(
    tools=["read_mail", "send_mail"],
    principals={"alice": "user", "svc-triage": "service"},
    secrets=["SLACK_TOKEN"],
    plans=["subscription", "session"],
    jobs=["bill"],
    outputs=["Decision"],
    checks=["non_empty"],
    model_problem=lambda m: None if m.startswith("scripted:") else "unknown provider",
)

GOOD = """---
name: digest
owner: alice
triggers:
  - cron: "0 7 * * *"
    timezone: Europe/London
model: scripted:digest
tools: [read_mail]
billing: subscription
---
Summarise my mail.
"""


def problems(text: str, known: Known = KNOWN) -> list[str]:
    with pytest.raises(RoutineError) as caught:
        load_text(text, "r.md", known)
    return [str(p) for p in caught.value.problems]


def with_line(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


def test_a_good_file_loads() -> None:
    routine = load_text(GOOD, "r.md", KNOWN)
    assert routine.name == "digest" and routine.spec.personal
    assert routine.prompt == "Summarise my mail."


def test_yaml_syntax_error() -> None:
    assert problems(with_line("tools: [read_mail]", "tools: [read_mail")) == [
        "r.md:9:8: YAML syntax error: expected ',' or ']', but got ':'"
    ]


def test_no_front_matter() -> None:
    assert problems("Summarise my mail.\n") == [
        "r.md:1:1: a routine file starts with a '---' line, then YAML front matter, then a "
        "'---' line, then the prompt"
    ]


def test_unknown_field_with_did_you_mean() -> None:
    found = problems(with_line("model: scripted:digest", "modle: scripted:digest"))
    assert found[0] == "r.md:2:1: field 'model' is required"
    assert found[1] == (
        "r.md:7:1: unknown field 'modle' (did you mean 'model'?); allowed here: "
        + ", ".join(FIELDS)
    )


def test_unknown_nested_field() -> None:
    found = problems(with_line("    timezone: Europe/London", "    timezon: Europe/London"))
    assert found == [
        "r.md:6:5: unknown field 'triggers[0].timezon' (did you mean 'timezone'?); "
        "allowed here: cron, timezone, jitter"
    ]


def test_bad_type() -> None:
    found = problems(with_line("tools: [read_mail]", "tools: [read_mail]\nmax_steps: many"))
    assert found == ["r.md:9:12: field 'max_steps': Input should be a valid integer, got 'many'"]


def test_a_trigger_of_no_kind() -> None:
    found = problems(with_line('  - cron: "0 7 * * *"', '  - crn: "0 7 * * *"'))
    assert found == [
        "r.md:5:5: field 'triggers[0]': a trigger needs one of the keys cron, every, event, "
        "webhook, api"
    ]


def test_a_bad_cron_expression() -> None:
    found = problems(with_line('"0 7 * * *"', '"0 25 * * *"'))
    assert len(found) == 1 and found[0].startswith("r.md:5:5: field 'triggers[0]': ")
    assert "25" in found[0]


def test_unknown_tool() -> None:
    assert problems(with_line("tools: [read_mail]", "tools: [read_mial]")) == [
        "r.md:8:9: unknown tool 'read_mial' (did you mean 'read_mail'?); known: read_mail, "
        "send_mail"
    ]


def test_unknown_principal() -> None:
    assert problems(with_line("owner: alice", "owner: alicia")) == [
        "r.md:3:8: unknown user principal 'alicia' (did you mean 'alice'?); known: alice"
    ]


def test_owner_must_be_a_user() -> None:
    assert problems(with_line("owner: alice", "owner: svc-triage")) == [
        "r.md:3:8: owner must name a user principal, and 'svc-triage' is a service: use "
        "run_as for a service account (a managed agent)"
    ]


def test_owner_or_run_as_exactly_one() -> None:
    assert problems(with_line("owner: alice", "owner: alice\nrun_as: svc-triage")) == [
        "r.md:2:1: give exactly one of owner (a user: a personal routine) or run_as (a "
        "service account: a managed agent)"
    ]


def test_unknown_model() -> None:
    assert problems(with_line("scripted:digest", "anthropc:claude")) == [
        "r.md:7:8: model 'anthropc:claude': unknown provider"
    ]


def test_unknown_secret() -> None:
    assert problems(
        with_line("tools: [read_mail]", "tools: [read_mail]\nsecrets: [SLAK_TOKEN]")
    ) == [
        "r.md:9:11: unknown secret 'SLAK_TOKEN' (did you mean 'SLACK_TOKEN'?); known: SLACK_TOKEN"
    ]


def test_unknown_plan() -> None:
    assert problems(with_line("billing: subscription", "billing: subscriptoin")) == [
        "r.md:9:10: unknown plan 'subscriptoin' (did you mean 'subscription'?); known: "
        "session, subscription"
    ]


def test_approval_of_a_tool_the_routine_does_not_have() -> None:
    found = problems(
        with_line("tools: [read_mail]", "tools: [read_mail]\napproval:\n  - tools: [send_mail]")
    )
    assert found == [
        "r.md:10:13: unknown tool (not in this routine's tools) 'send_mail' (did you mean "
        "'read_mail'?); known: read_mail"
    ]


def test_an_invalid_output_schema() -> None:
    found = problems(with_line("tools: [read_mail]", "tools: [read_mail]\noutput: {type: 12}"))
    assert len(found) == 1 and found[0].startswith(
        "r.md:9:9: field 'output' is not a valid JSON Schema: 12 is not valid"
    )


def test_an_empty_prompt() -> None:
    assert problems(GOOD.replace("Summarise my mail.\n", "")) == [
        "r.md:11:1: the prompt is empty: write it below the closing '---'"
    ]


def test_every_problem_of_every_file_at_once_and_good_files_still_load(tmp_path: Path) -> None:
    (tmp_path / "a-good.md").write_text(GOOD)
    (tmp_path / "b-bad.md").write_text(
        GOOD.replace("name: digest", "name: other")
        .replace("owner: alice", "owner: alicia")
        .replace("[read_mail]", "[read_mial]")
    )
    (tmp_path / "c-bad.md").write_text(GOOD.replace("name: digest", "name: [x"))
    loaded = load_dir(tmp_path, KNOWN)
    assert [r.name for r in loaded.routines] == ["digest"]
    bad = str(tmp_path / "b-bad.md")
    c = str(tmp_path / "c-bad.md")
    assert [str(p) for p in loaded.problems] == [
        f"{bad}:3:8: unknown user principal 'alicia' (did you mean 'alice'?); known: alice",
        f"{bad}:8:9: unknown tool 'read_mial' (did you mean 'read_mail'?); known: read_mail, "
        "send_mail",
        f"{c}:3:6: YAML syntax error: expected ',' or ']', but got ':'",
    ]
    with pytest.raises(RoutineError) as caught:
        loaded.raise_for_problems()
    assert len(caught.value.problems) == 3


def test_two_files_with_one_name(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(GOOD)
    (tmp_path / "b.md").write_text(GOOD)
    loaded = load_dir(tmp_path, KNOWN)
    assert [r.path for r in loaded.routines] == [str(tmp_path / "a.md")]
    assert [str(p) for p in loaded.problems] == [
        f"{tmp_path / 'b.md'}:2:7: routine name 'digest' is used by {tmp_path / 'a.md'} too; "
        "names must be unique"
    ]


def test_the_json_schema_is_the_models() -> None:
    schema = json_schema()
    assert set(schema["properties"]) == set(FIELDS)
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "model"}
    json.dumps(schema)  # printable as JSON


def test_what_changed_between_two_looks(tmp_path: Path) -> None:
    folder = tmp_path / "routines"
    folder.mkdir()
    (folder / "digest.md").write_text(GOOD)
    (folder / "old.md").write_text(GOOD.replace("name: digest", "name: old"))
    before = look(tmp_path)
    (folder / "digest.md").write_text(GOOD.replace('"0 7 * * *"', '"0 8 * * *"'))
    (folder / "old.md").unlink()
    (folder / "new.md").write_text(GOOD.replace("name: digest", "name: new"))
    (folder / "bad.md").write_text("no front matter")
    assert changes(before, look(tmp_path)) == [
        "routine added: new",
        "routine removed: old",
        "routine digest: triggers changed (cron 0 7 * * * (Europe/London) -> cron 0 8 * * * "
        "(Europe/London)); a new schedule starts from now, no missed tick is fired",
        f"routine file not loaded: {folder / 'bad.md'}:1:1: a routine file starts with a '---' "
        "line, then YAML front matter, then a '---' line, then the prompt",
    ]


# -- the property: only RoutineError ---------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=8)), inner, max_size=5),
    ),
    max_leaves=12,
)
FIELD_VALUES = st.dictionaries(st.sampled_from([*FIELDS, "typo", "triggers"]), VALUES, max_size=8)


def check_only_routine_errors(text: str) -> None:
    try:
        load_text(text, "p.md", KNOWN)
    except RoutineError as exc:
        assert exc.problems and all(str(p).startswith("p.md:") for p in exc.problems)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FIELD_VALUES, st.text(max_size=40))
def test_random_field_values_raise_only_routine_errors(
    fields: dict[str, object], body: str
) -> None:
    front = yaml.safe_dump(fields, allow_unicode=True) if fields else ""
    check_only_routine_errors(f"---\n{front}---\n{body}")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable + "ÄΩ\u2028\x00\ufeff", max_size=200))
def test_random_yaml_raises_only_routine_errors(front: str) -> None:
    check_only_routine_errors(f"---\n{front}\n---\nprompt")
    check_only_routine_errors(front)
