"""Model strings (`provider:model`) to Model objects.

Resolution happens when an agent is defined, so a missing API key is reported at import
time with the variable to set, not at 3 a.m. when the first run reaches its model call.
Provider modules are imported lazily: `import rota` does not pay for the SDKs.
"""

from __future__ import annotations

import os

from rota.agents.models import scripted
from rota.agents.types import Model
from rota.errors import ConfigError, MissingApiKey, UnknownModel
from rota.model import PROVIDERS

COMPATIBLE_KEY_ENV = "OPENAI_COMPATIBLE_API_KEY"


def resolve_model(spec: str, *, base_url: str | None = None, api_key: str | None = None) -> Model:
    """The Model for `spec`.

    - `anthropic:NAME` — Messages API; key from `api_key=` or ANTHROPIC_API_KEY.
    - `openai:NAME` — Chat Completions; key from `api_key=` or OPENAI_API_KEY.
    - `openai-responses:NAME` — the Responses API; same key.
    - `openai-compatible:NAME` — a Chat Completions server at `base_url=` (or
      OPENAI_BASE_URL), e.g. vLLM or Ollama. The key is optional: `api_key=`, else
      OPENAI_COMPATIBLE_API_KEY, else a placeholder. OPENAI_API_KEY is deliberately not sent
      to a third-party server.
    - `scripted:NAME` — the offline model (rota.agents.models.scripted).

    `base_url` is honoured for every real provider (tests point the SDKs at local fakes).
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise UnknownModel(str(spec), "expected 'provider:model'")
    provider, _, name = spec.partition(":")
    provider, name = provider.strip().lower(), name.strip()
    if not provider or not name:
        raise UnknownModel(spec, "both the provider and the model name are needed")
    if provider == "scripted":
        return scripted.get_scripted(name)  # looked up on the module: tests replace it
    if provider == "anthropic":
        from rota.agents.models.anthropic import AnthropicModel  # noqa: PLC0415  # heavy: the anthropic SDK

        key = _key(api_key, "anthropic", "ANTHROPIC_API_KEY")
        return AnthropicModel(name, api_key=key, base_url=base_url)
    if provider in ("openai", "openai-responses"):
        from rota.agents.models.openai import (  # noqa: PLC0415  # heavy: the openai SDK
            OpenAIChatModel,
            OpenAIResponsesModel,
        )

        key = _key(api_key, "openai", "OPENAI_API_KEY")
        if provider == "openai":
            return OpenAIChatModel(name, api_key=key, base_url=base_url)
        return OpenAIResponsesModel(name, api_key=key, base_url=base_url)
    if provider == "openai-compatible":
        from rota.agents.models.openai import OpenAIChatModel  # noqa: PLC0415  # the openai SDK

        url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not url:
            raise ConfigError(
                f"model {spec!r} needs the server's URL: pass base_url= "
                "(e.g. 'http://localhost:11434/v1' for Ollama) or set OPENAI_BASE_URL"
            )
        key = api_key or os.environ.get(COMPATIBLE_KEY_ENV) or "not-needed"
        return OpenAIChatModel(
            name,
            api_key=key,
            base_url=url,
            provider="openai-compatible",
            max_tokens_param="max_tokens",
        )
    raise UnknownModel(spec, f"no provider {provider!r} (known: {', '.join(PROVIDERS)})")


def _key(explicit: str | None, provider: str, variable: str) -> str:
    key = explicit or os.environ.get(variable, "").strip()
    if not key:
        raise MissingApiKey(provider, variable)
    return key
