"""What to alert on and where to send it: sinks, `Alerts`, and the app's policy (the global
settings with each job's own)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..durations import Duration, optional_seconds, seconds
from ..errors import ConfigError

_SINK_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SECRET_PREFIX = "whsec_"
# Every kind of alert rota raises (docs/alerts.md), and `rota alerts test`'s.
ALERT_KINDS = ("failure", "budget", "approval", "silence", "start", "success", "capped", "test")


@dataclass(frozen=True)
class SlackSink:
    """A Slack-compatible incoming webhook: POSTs `{"text": ...}`. The URL is itself a
    secret for most chat tools, so it may be named instead (`url_secret`: an environment
    variable or a vault secret), read when an alert is sent and never stored."""

    name: str = "slack"
    url: str | None = None
    url_secret: str | None = None
    timeout: Duration = "10s"

    def __post_init__(self) -> None:
        _check_name(self.name)
        if (self.url is None) == (self.url_secret is None):
            raise ConfigError(
                f"slack sink {self.name!r} needs url='https://hooks.slack.com/services/...' "
                "or url_secret='NAME' (an environment variable or vault secret), not both"
            )
        if self.url is not None:
            _check_url(self.name, self.url)
        if self.url_secret is not None:
            _check_secret_name(self.name, "url_secret", self.url_secret)
        seconds(self.timeout, what=f"sink {self.name!r} timeout")


@dataclass(frozen=True)
class WebhookSink:
    """A generic webhook: POSTs the alert as JSON, signed with the Standard Webhooks scheme
    (webhook-id, webhook-timestamp, webhook-signature: v1,<base64 HMAC-SHA256>) using the
    `whsec_...` secret named by `secret` (an environment variable or a vault secret)."""

    url: str
    secret: str
    name: str = "webhook"
    timeout: Duration = "10s"

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_url(self.name, self.url)
        _check_secret_name(self.name, "secret", self.secret)
        seconds(self.timeout, what=f"sink {self.name!r} timeout")


Sink = SlackSink | WebhookSink


def slack(
    url: str | None = None, *, url_secret: str | None = None, name: str = "slack"
) -> SlackSink:
    """A Slack-compatible sink: `slack("https://hooks.slack.com/services/...")` or
    `slack(url_secret="SLACK_ALERTS_URL")`."""
    return SlackSink(name=name, url=url, url_secret=url_secret)


def webhook(url: str, *, secret: str, name: str = "webhook") -> WebhookSink:
    """A signed webhook sink: `webhook("https://ops.example.com/rota", secret="ALERTS_SECRET")`
    where ALERTS_SECRET (environment or vault) holds `whsec_<base64>`."""
    return WebhookSink(url=url, secret=secret, name=name)


@dataclass(frozen=True)
class Alerts:
    """What to alert on, and where (sinks: sink objects, or names of the app's sinks).

    failure: a run failed after its last retry. budget: a model call was refused by a
    budget. approval_after: an approval request still pending this long after it was made
    (None: never). silence: a schedule missed a fire time (see docs/alerts.md for the
    grace). check_every, retries and backoff are the app's (global) settings: how often each
    worker runs the watchdog, and how a failed delivery is retried.

    Off unless asked for (they are news, not trouble): start, a run started; success, a run
    succeeded; capped, a run cap dropped or deferred a run; silence_after, no run succeeded
    for this long (with silence on), whatever triggers the job."""

    sinks: Sequence[Sink | str] = ()
    failure: bool = True
    budget: bool = True
    approval_after: Duration | None = "1h"
    silence: bool = True
    check_every: Duration = "15s"
    retries: int = 8
    backoff: Duration = "5s"
    start: bool = False
    success: bool = False
    capped: bool = False
    silence_after: Duration | None = None

    def __post_init__(self) -> None:
        sinks = self.sinks
        if isinstance(sinks, (str, SlackSink, WebhookSink)):
            sinks = (sinks,)
        if not isinstance(sinks, Iterable):
            raise ConfigError(f"alerts sinks must be a list of sinks, got {sinks!r}")
        object.__setattr__(self, "sinks", tuple(sinks))
        for sink in self.sinks:
            if not isinstance(sink, (str, SlackSink, WebhookSink)):
                raise ConfigError(
                    "each alert sink must be rota.alerts.slack(...), rota.alerts.webhook(...) "
                    f"or the name of one the app declared, got {sink!r}"
                )
        for flag in ("failure", "budget", "silence", "start", "success", "capped"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"alerts {flag}= must be True or False")
        optional_seconds(self.approval_after, what="alerts approval_after")
        optional_seconds(self.silence_after, what="alerts silence_after")
        if seconds(self.check_every, what="alerts check_every") <= 0:
            raise ConfigError("alerts check_every must be positive, e.g. '15s'")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigError(f"alerts retries must be a whole number >= 0, got {self.retries!r}")
        seconds(self.backoff, what="alerts backoff")

    @property
    def approval_after_s(self) -> float | None:
        return optional_seconds(self.approval_after, what="alerts approval_after")

    @property
    def silence_after_s(self) -> float | None:
        return optional_seconds(self.silence_after, what="alerts silence_after")


JobAlerts = Alerts | bool | None | Sequence[Sink | str]


@dataclass
class AlertPolicy:
    """The app's alerts: the global settings, and per job (by name) its own settings, or
    False for none. A job without its own uses the global ones."""

    default: Alerts | None = None
    jobs: dict[str, Alerts | None] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.default is not None or any(a is not None for a in self.jobs.values())

    def set_default(self, alerts: Alerts | None) -> None:
        if alerts is not None and not isinstance(alerts, Alerts):
            raise ConfigError(
                f"alerts= must be rota.alerts.Alerts(sinks=[...]), got {type(alerts).__name__}"
            )
        AlertPolicy(alerts, dict(self.jobs)).check()  # before changing anything
        self.default = alerts

    def set_job(self, job: str, value: Any) -> None:
        """A job's `alerts=` option: Alerts(...), a list of sinks (or sink names), False for
        none, or True/None for the app's."""
        jobs = dict(self.jobs)
        if value is None or value is True:
            jobs.pop(job, None)
        elif value is False:
            jobs[job] = None
        elif isinstance(value, Alerts):
            jobs[job] = value
        elif isinstance(value, (list, tuple)):
            jobs[job] = Alerts(sinks=value)
        elif isinstance(value, (str, SlackSink, WebhookSink)):
            jobs[job] = Alerts(sinks=(value,))
        else:
            raise ConfigError(
                f"{job}: alerts= must be Alerts(...), a list of sinks or sink names, or False; "
                f"got {value!r}"
            )
        AlertPolicy(self.default, jobs).check()  # before changing anything
        self.jobs = jobs

    def rule(self, job: str) -> Alerts | None:
        """The settings for one job (None: no alerts for it)."""
        return self.jobs.get(job, self.default)

    def sinks(self, rule: Alerts) -> list[Sink]:
        """A rule's sinks, names resolved against the app's; none given: the app's."""
        named = self.named()
        chosen = rule.sinks or (self.default.sinks if self.default else ())
        return [named[s] if isinstance(s, str) else s for s in chosen]

    def named(self) -> dict[str, Sink]:
        """Every sink object the app and its jobs declared, by name."""
        found: dict[str, Sink] = {}
        rules = [self.default, *self.jobs.values()]
        for rule in rules:
            for sink in rule.sinks if rule else ():
                if isinstance(sink, str):
                    continue
                if sink.name in found and found[sink.name] != sink:
                    raise ConfigError(
                        f"two different alert sinks are named {sink.name!r}; give one name=..."
                    )
                found[sink.name] = sink
        return found

    def check(self) -> None:
        """Each sink name used refers to a sink that exists: a ConfigError names what is
        missing and what there is."""
        named = self.named()
        rules: Mapping[str, Alerts | None] = {"the app": self.default, **self.jobs}
        for owner, rule in rules.items():
            for sink in rule.sinks if rule else ():
                if isinstance(sink, str) and sink not in named:
                    known = ", ".join(sorted(named)) or "none yet"
                    raise ConfigError(
                        f"alerts of {owner} name the sink {sink!r}, which is not declared "
                        f"(declared: {known}); pass it to App(alerts=Alerts(sinks=[...]))"
                    )


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _SINK_NAME.fullmatch(name):
        raise ConfigError(
            f"alert sink name {name!r} must be lowercase letters, digits, '_', '.' or '-'"
        )


def _check_url(name: str, url: Any) -> None:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"alert sink {name!r} needs an http(s) URL, got {url!r}")


def _check_secret_name(sink: str, option: str, value: Any) -> None:
    if isinstance(value, str) and value.startswith((SECRET_PREFIX, "http")):
        raise ConfigError(
            f"alert sink {sink!r}: {option}= takes the NAME of an environment variable or "
            "vault secret that holds the value, not the value itself"
        )
    if not isinstance(value, str) or not _SECRET_NAME.fullmatch(value):
        raise ConfigError(
            f"alert sink {sink!r}: {option}= must be a name like 'ALERTS_WEBHOOK_SECRET'"
        )
