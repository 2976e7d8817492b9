"""Prices: Price arithmetic, the bundled genai-prices data, versioned overrides, and the
errors for models without a price. No test touches the network (see `_no_network`)."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from genai_prices import Usage as GenaiUsage
from genai_prices import data as genai_data
from genai_prices.data_snapshot import DataSnapshot, set_custom_snapshot

from pinned_prices import SNAPSHOT as PINNED
from pinned_prices import VERSION as PINNED_VERSION
from rota.agents.types import Usage
from rota.cost import Price, PriceOverride, PriceTable
from rota.errors import ConfigError, ConfigFileError, UnknownPrice

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
BUNDLED = DataSnapshot(providers=genai_data.providers, from_auto_update=False)
# The catalogue rota reads in these tests (conftest installs it): the tests' own figures.
CATALOGUE = PINNED


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails the test: prices come from the installed package only."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a price lookup tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# -- Price arithmetic ---------------------------------------------------------------------

SONNET_LIKE = Price(
    input=Decimal(3),
    output=Decimal(15),
    cache_write_5m=Decimal("3.75"),
    cache_write_1h=Decimal(6),
    cache_read=Decimal("0.3"),
)
MIXED = Usage(
    input_tokens=1000, output_tokens=500, cache_write_tokens=2000, cache_read_tokens=10_000
)


def test_cost_is_each_kind_of_token_at_its_rate() -> None:
    # 1000*3 + 500*15 + 2000*3.75 + 10000*0.3 = 3000 + 7500 + 7500 + 3000 = 21000 per 1e6
    assert SONNET_LIKE.cost(MIXED) == Decimal("0.021")
    # a 1-hour cache write: 2000*6 = 12000 instead of 7500 -> 3000 + 7500 + 12000 + 3000
    assert SONNET_LIKE.cost(MIXED, cache_ttl="1h") == Decimal("0.0255")


def test_reasoning_tokens_are_not_billed_twice() -> None:
    with_reasoning = Usage(input_tokens=1000, output_tokens=500, reasoning_tokens=400)
    # 1000*3 + 500*15 = 10500 per 1e6; the 400 reasoning tokens are inside the 500
    assert SONNET_LIKE.cost(with_reasoning) == Decimal("0.0105")


def test_cache_rates_default_to_the_input_rate() -> None:
    price = Price(input=Decimal(2), output=Decimal(8))
    assert (price.cache_write_5m, price.cache_write_1h, price.cache_read) == (2, 2, 2)
    # (1000 + 2000 + 10000) * 2 + 500 * 8 = 26000 + 4000 = 30000 per 1e6
    assert price.cost(MIXED) == Decimal("0.03")


def test_batch_discount_takes_a_fraction_off() -> None:
    price = Price(input=Decimal(3), output=Decimal(15), batch_discount=Decimal("0.5"))
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert price.cost(usage) == Decimal(18)  # 3 + 15
    assert price.cost(usage, batch=True) == Decimal(9)  # (3 + 15) * 0.5


def test_numbers_become_exact_decimals() -> None:
    price = Price(input=0.1, output="0.2")  # type: ignore[arg-type]
    assert (price.input, price.output) == (Decimal("0.1"), Decimal("0.2"))
    # 3 * 0.1 + 3 * 0.2 per million: exactly 0.0000009, not 9.000000000000001e-07
    assert price.cost(Usage(input_tokens=3, output_tokens=3)) == Decimal("0.0000009")


def test_a_tier_applies_to_the_whole_request_above_its_prompt_size() -> None:
    price = Price(
        input=Decimal(3),
        output=Decimal(15),
        tiers=((200_000, Price(input=Decimal(6), output=Decimal("22.5"))),),
    )
    long = Usage(input_tokens=250_000, output_tokens=1000)
    # one call with a 250k prompt: 250000*6 + 1000*22.5 = 1522500 per 1e6
    assert price.cost(long) == Decimal("1.5225")
    # the same tokens over two calls: 125k average prompt, base rates:
    # 250000*3 + 1000*15 = 765000 per 1e6
    assert price.cost(Usage(input_tokens=250_000, output_tokens=1000, requests=2)) == Decimal(
        "0.765"
    )
    # exactly at the threshold is still the base rate (a tier starts strictly above)
    assert price.cost(Usage(input_tokens=200_000)) == Decimal("0.6")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"input": -1, "output": 1}, "price input must be >= 0 USD per million tokens, got -1"),
        (
            {"input": 1, "output": 1, "batch_discount": 2},
            "price batch_discount must be a fraction 0..1, got 2",
        ),
        ({"input": "lots", "output": 1}, "price input must be a number, got 'lots'"),
    ],
)
def test_bad_prices_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Price(**fields)  # type: ignore[arg-type]
    assert str(caught.value) == message


# -- genai-prices (bundled data) -----------------------------------------------------------


def _bundled(
    provider: str, ref: str, at: datetime, context: dict[str, str] | None = None
) -> object:
    _, info = CATALOGUE.find_provider_model(ref, None, provider, None)
    return info.get_prices(at, context)


@pytest.mark.parametrize(
    ("model", "provider", "ref"),
    [
        ("anthropic:claude-sonnet-4", "anthropic", "claude-sonnet-4"),
        ("anthropic:claude-sonnet-4-20250514", "anthropic", "claude-sonnet-4-20250514"),
        ("openai:gpt-4o", "openai", "gpt-4o"),
        ("openai-responses:gpt-4o", "openai", "gpt-4o"),
    ],
)
def test_list_prices_are_the_bundled_genai_prices(model: str, provider: str, ref: str) -> None:
    price = PriceTable().resolve(model, NOW)
    bundled = _bundled(provider, ref, NOW)
    assert price.input == bundled.input_mtok  # type: ignore[attr-defined]
    assert price.output == bundled.output_mtok  # type: ignore[attr-defined]
    assert price.cache_read == bundled.cache_read_mtok  # type: ignore[attr-defined]
    assert price.source.startswith("genai-prices ")
    # and the whole cost agrees with genai-prices' own calculation, whose input_tokens
    # is the whole prompt (rota's three input fields are disjoint parts of it)
    usage = Usage(input_tokens=12_000, output_tokens=3_000, cache_read_tokens=40_000)
    theirs = CATALOGUE.calc(
        GenaiUsage(input_tokens=52_000, output_tokens=3_000, cache_read_tokens=40_000),
        ref,
        provider,
        None,
        NOW,
    ).total_price
    assert price.cost(usage) == theirs


def test_the_catalogue_figures_for_two_well_known_models() -> None:
    # As the tests' catalogue says (pinned_prices.py, the providers' published prices in
    # genai-prices' types): Claude Sonnet 4 at $3 / $15, cache write $3.75 (5 min) / $6 (1 h),
    # read $0.30; GPT-4o at $2.50 / $10, cached input $1.25, no cache write price (so writes
    # cost plain input).
    sonnet = PriceTable().resolve("anthropic:claude-sonnet-4", NOW)
    assert (sonnet.input, sonnet.output, sonnet.cache_write_5m, sonnet.cache_write_1h) == (
        3,
        15,
        Decimal("3.75"),
        6,
    )
    assert sonnet.cache_read == Decimal("0.3")
    gpt = PriceTable().resolve("openai:gpt-4o", NOW)
    assert (gpt.input, gpt.output, gpt.cache_read, gpt.cache_write_5m) == (
        Decimal("2.5"),
        10,
        Decimal("1.25"),
        Decimal("2.5"),
    )


def test_catalogue_prices_are_versioned_by_date() -> None:
    # OpenAI cut o3 from $10/$40 to $2/$8 on 2025-06-10; the catalogue records both.
    table = PriceTable()
    before = table.resolve("openai:o3", datetime(2025, 6, 9, 23, 59, tzinfo=UTC))
    after = table.resolve("openai:o3", datetime(2025, 6, 10, 0, 0, tzinfo=UTC))
    assert (before.input, before.output) == (10, 40)
    assert (after.input, after.output) == (2, 8)


def test_catalogue_tiers_and_batch_rates_match_genai_prices() -> None:
    price = PriceTable().resolve("anthropic:claude-sonnet-4-5", NOW)
    long = Usage(input_tokens=250_000, output_tokens=2_000)
    theirs = CATALOGUE.calc(
        GenaiUsage(input_tokens=250_000, output_tokens=2_000),
        "claude-sonnet-4-5",
        "anthropic",
        None,
        NOW,
    ).total_price
    assert price.cost(long) == theirs == Decimal("1.545")  # 250000*6 + 2000*22.5 per 1e6
    theirs_batch = CATALOGUE.calc(
        GenaiUsage(input_tokens=1000, output_tokens=1000),
        "claude-sonnet-4-5",
        "anthropic",
        None,
        NOW,
        {"processing": "batch"},
    ).total_price
    assert price.cost(Usage(input_tokens=1000, output_tokens=1000), batch=True) == theirs_batch


def test_a_model_without_batch_rates_pays_list_price_in_batch() -> None:
    # claude-sonnet-4 has no batch variant in the catalogue: rota does not guess a discount.
    price = PriceTable().resolve("anthropic:claude-sonnet-4", NOW)
    assert price.cost(MIXED, batch=True) == price.cost(MIXED)


@pytest.mark.bundled_prices
def test_a_downloaded_snapshot_elsewhere_in_the_process_is_ignored() -> None:
    # Another library may start genai-prices' updater, which swaps the process-wide
    # snapshot. rota reads its own copy of the bundled data, so its prices do not move.
    provider, model = _a_bundled_token_priced_model()
    spec = f"{provider}:{model}"
    before = PriceTable().resolve(spec, NOW)
    set_custom_snapshot(DataSnapshot(providers=[], from_auto_update=True))
    try:
        assert PriceTable().resolve(spec, NOW) == before
    finally:
        set_custom_snapshot(None)


def _a_bundled_token_priced_model() -> tuple[str, str]:
    """Any Anthropic model with flat input and output rates in the installed data: the test
    must not name a model or a figure, which change from one release to the next."""
    for provider in genai_data.providers:
        if provider.id != "anthropic":
            continue
        for info in provider.models:
            prices = info.get_prices(NOW)
            if isinstance(prices.input_mtok, Decimal) and isinstance(prices.output_mtok, Decimal):
                return "anthropic", info.id
    raise AssertionError("the installed genai-prices data has no Anthropic token prices")


@pytest.mark.bundled_prices
def test_rota_reads_the_installed_bundled_data_as_genai_prices_does() -> None:
    provider, model = _a_bundled_token_priced_model()
    price = PriceTable().resolve(f"{provider}:{model}", NOW)
    _, info = BUNDLED.find_provider_model(model, None, provider, None)
    bundled = info.get_prices(NOW)
    assert (price.input, price.output) == (bundled.input_mtok, bundled.output_mtok)
    assert price.source.startswith("genai-prices ")
    assert "(bundled data)" not in price.source and model in price.source
    usage = Usage(input_tokens=12_000, output_tokens=3_000)
    theirs = BUNDLED.calc(
        GenaiUsage(input_tokens=12_000, output_tokens=3_000), model, provider, None, NOW
    ).total_price
    assert price.cost(usage) == theirs


# -- unknown prices ------------------------------------------------------------------------

FIX = (
    "; pass price=Price(input=..., output=...) (USD per million tokens), or add an override: "
    "[[prices]] model = {model!r} input = ... output = ... (0 and 0 for a free local model)"
)


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("openai:gpt-nonexistent", "genai-prices VERSION (bundled data) has no token price for it"),
        ("openai-compatible:llama3", "a self-hosted or third-party server has no list price"),
        (
            "scripted:demo",
            "a scripted model is simulated; price it explicitly, or give its override "
            "simulates = 'anthropic:...' to price it as the model it stands for",
        ),
        ("openai:whisper-1", "genai-prices VERSION (bundled data) has no token price for it"),
    ],
)
def test_an_unknown_price_is_an_error_never_zero(model: str, reason: str) -> None:
    reason = reason.replace("VERSION", PINNED_VERSION)
    with pytest.raises(UnknownPrice) as caught:
        PriceTable().resolve(model, NOW)
    assert str(caught.value) == f"no price for model {model!r}: {reason}" + FIX.format(model=model)
    assert caught.value.model == model


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("gpt-4o", "model 'gpt-4o' must be written provider:model, e.g. 'openai:gpt-4o'"),
        (
            "gemini:pro",
            "model 'gemini:pro': no provider 'gemini' (known: anthropic, openai, "
            "openai-responses, openai-compatible, scripted)",
        ),
    ],
)
def test_a_malformed_model_string_says_how_to_write_it(model: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PriceTable().resolve(model, NOW)
    assert str(caught.value) == message


def test_lookups_need_an_aware_time() -> None:
    with pytest.raises(ConfigError, match="aware datetime"):
        PriceTable().resolve("openai:gpt-4o", datetime(2026, 1, 1))


# -- overrides -----------------------------------------------------------------------------

LOCAL = {
    "prices": [
        {
            "model": "openai-compatible:llama3",
            "input": 0.1,
            "output": 0.2,
            "effective": "2026-01-01",
        },
        {
            "model": "openai-compatible:llama3",
            "input": 0.2,
            "output": 0.4,
            "effective": "2026-03-01",
        },
    ]
}


def test_overrides_are_versioned_so_old_runs_keep_their_price() -> None:
    table = PriceTable.from_config(LOCAL)
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    # a run on 2026-02-28 (before the change) keeps the old price: 0.1 + 0.2
    assert table.cost("openai-compatible:llama3", usage, datetime(2026, 2, 28, 23, tzinfo=UTC)) == (
        Decimal("0.3")
    )
    # from 2026-03-01 (UTC) the new one: 0.2 + 0.4
    assert table.cost("openai-compatible:llama3", usage, datetime(2026, 3, 1, tzinfo=UTC)) == (
        Decimal("0.6")
    )
    # before any override there is no price at all (a local server has no list price)
    with pytest.raises(UnknownPrice) as caught:
        table.resolve("openai-compatible:llama3", datetime(2025, 12, 31, tzinfo=UTC))
    assert caught.value.reason == (
        "a self-hosted or third-party server has no list price, "
        "and its overrides start on 2026-01-01"
    )


def test_an_effective_date_is_a_utc_date() -> None:
    table = PriceTable.from_config(LOCAL)
    # 00:30 on 1 March in Paris is still 28 February in UTC: the old price
    paris = datetime.fromisoformat("2026-03-01T00:30:00+01:00")
    assert table.resolve("openai-compatible:llama3", paris).input == Decimal("0.1")


def test_a_free_local_model_is_priced_zero_only_when_said_so() -> None:
    table = PriceTable([PriceOverride("openai-compatible:llama3", Price(Decimal(0), Decimal(0)))])
    assert table.cost("openai-compatible:llama3", MIXED, NOW) == 0


def test_an_override_wins_over_the_list_price() -> None:
    table = PriceTable.from_config(
        {"prices": [{"model": "openai:gpt-4o", "input": 2, "output": 8, "effective": "2026-06-01"}]}
    )
    assert table.resolve("openai:gpt-4o", NOW).input == 2  # our negotiated price
    assert table.resolve("openai:gpt-4o", datetime(2026, 5, 1, tzinfo=UTC)).input == Decimal("2.5")


def test_an_explicit_price_wins_over_everything() -> None:
    mine = Price(input=Decimal(1), output=Decimal(1))
    assert (
        PriceTable.from_config(LOCAL).resolve("openai-compatible:llama3", NOW, price=mine) is mine
    )


def test_a_scripted_model_can_be_priced_as_the_model_it_simulates() -> None:
    table = PriceTable.from_config(
        {"prices": [{"model": "scripted:demo", "simulates": "anthropic:claude-sonnet-4"}]}
    )
    price = table.resolve("scripted:demo", NOW)
    assert price == PriceTable().resolve("anthropic:claude-sonnet-4", NOW)
    assert price.source == "anthropic:claude-sonnet-4 (simulated by scripted:demo)"
    # or the caller says so (a scripted model declaring what it stands for)
    assert PriceTable().resolve("scripted:x", NOW, simulates="openai:gpt-4o").input == Decimal(
        "2.5"
    )


def test_simulation_in_a_circle_is_an_error() -> None:
    table = PriceTable.from_config(
        {
            "prices": [
                {"model": "openai-compatible:a", "simulates": "openai-compatible:b"},
                {"model": "openai-compatible:b", "simulates": "openai-compatible:a"},
            ]
        }
    )
    with pytest.raises(ConfigError) as caught:
        table.resolve("openai-compatible:a", NOW)
    assert str(caught.value) == (
        "price overrides simulate in a circle: "
        "openai-compatible:a -> openai-compatible:b -> openai-compatible:a"
    )


def test_overrides_load_from_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "rota.toml"
    path.write_text(
        "[app]\nname = 'x'  # other settings are left alone\n\n"
        "[[prices]]\nmodel = 'openai-compatible:llama3'\ninput = 0\noutput = 0\n"
        "effective = 2026-01-01\n"
    )
    table = PriceTable.from_file(path)
    price = table.resolve("openai-compatible:llama3", NOW)
    assert (price.input, price.output, price.source) == (0, 0, "override from 2026-01-01")
    with pytest.raises(UnknownPrice):  # effective from 2026-01-01 only
        table.resolve("openai-compatible:llama3", datetime(2025, 6, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (
            {"model": "openai-compatible:llama3", "input": -1, "output": 0},
            "field 'prices[0].input' must be >= 0, got -1",
        ),
        (
            {"model": "openai:gpt-4o", "input": 1},
            "prices[0]: both input and output are required (USD per million tokens)",
        ),
        (
            {"model": "openai:gpt-4o", "input": 1, "output": 2, "cache_wirte_5m": 1},
            "unknown field 'prices[0].cache_wirte_5m' (see docs/cost.md for the fields)",
        ),
        ({"input": 1, "output": 2}, "field 'prices[0].model' is required"),
        (
            {"model": "antropic:claude-sonnet-4", "input": 1, "output": 2},
            "prices[0]: model 'antropic:claude-sonnet-4': no provider 'antropic' (known: "
            "anthropic, openai, openai-responses, openai-compatible, scripted)",
        ),
        (
            {"model": "openai:gpt-4o", "input": 1, "output": 2, "batch_discount": 1.5},
            "field 'prices[0].batch_discount' must be <= 1, got 1.5",
        ),
        (
            {"model": "scripted:demo", "simulates": "openai:gpt-4o", "input": 1},
            "prices[0]: give either input/output rates or simulates, not both",
        ),
    ],
)
def test_bad_overrides_name_the_file_and_field(entry: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigFileError) as caught:
        PriceTable.from_config({"prices": [entry]}, "rota.toml")
    assert str(caught.value) == f"rota.toml: {problem}"
