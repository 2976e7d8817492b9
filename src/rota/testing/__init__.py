"""rota's public test kit: fakes that let tests and benchmarks run without a network."""

from .fake_providers import (
    FakeAnthropicServer,
    FakeOpenAIServer,
    FakeReply,
    FakeThinking,
    FakeToolCall,
    RecordedRequest,
)
from .scripted import (
    Reply,
    ScriptedModel,
    answer,
    call,
    get_scripted,
    register_scripted,
    say,
    scripted,
    unregister_scripted,
)

__all__ = [
    "FakeAnthropicServer",
    "FakeOpenAIServer",
    "FakeReply",
    "FakeThinking",
    "FakeToolCall",
    "RecordedRequest",
    "Reply",
    "ScriptedModel",
    "answer",
    "call",
    "get_scripted",
    "register_scripted",
    "say",
    "scripted",
    "unregister_scripted",
]
