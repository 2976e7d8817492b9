"""`rota demo`: the seed's scenario at full scale, offline, with the bill in front of you.

Signed payment webhooks arrive over HTTP; a deterministic job bills the ones it knows; the
exceptions go to an agent; ledger entries over a threshold wait for a human; a shadow
sample measures how often the agent agrees with the job. The summary, read back from the
store, compares job only, agent only and hybrid on time, tokens and dollars under three
billing plans. See docs/demo.md.
"""

from .report import render
from .runner import DemoOptions, check_model, fresh_database, run_demo
from .summary import summarize

__all__ = ["DemoOptions", "check_model", "fresh_database", "render", "run_demo", "summarize"]
