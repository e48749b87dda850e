"""The official `anthropic` SDK against tollgate's `/v1/messages`: served by an
Anthropic upstream (same dialect) and by an OpenAI one (translated), streaming
included, and errors raising the SDK's own exception classes."""
import anthropic
import pytest

HI = [{"role": "user", "content": "Say hello"}]


def test_messages_plain(anth):
    m = anth.messages.create(model="claude-sonnet", max_tokens=100, messages=HI)
    assert m.content[0].text == "Hello from the fake Anthropic."
    assert m.usage.input_tokens == 15 and m.usage.output_tokens == 7
    assert m.usage.cache_read_input_tokens == 5


def test_messages_stream(anth):
    with anth.messages.stream(model="claude-sonnet", max_tokens=100, messages=HI) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Hello"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3


def test_messages_served_by_openai(anth):
    m = anth.messages.create(model="gpt-4o-mini", max_tokens=100, messages=HI, system="Be brief.")
    assert m.content[0].text == "Hello from the fake upstream."
    assert m.model == "gpt-4o-mini"
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens == 12 and m.usage.output_tokens == 5


def test_messages_stream_served_by_openai(anth):
    with anth.messages.stream(model="gpt-4o-mini", max_tokens=100, messages=HI) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Hello"
    assert final.usage.output_tokens == 2


def test_messages_with_tools(anth):
    m = anth.messages.create(
        model="claude-sonnet",
        max_tokens=100,
        messages=HI,
        tools=[{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}],
    )
    assert m.content[0].text == "Hello from the fake Anthropic."


def test_unknown_key_is_an_authentication_error(anth_with):
    with pytest.raises(anthropic.AuthenticationError) as e:
        anth_with("tg_notarealkey").messages.create(model="claude-sonnet", max_tokens=10, messages=HI)
    assert e.value.status_code == 401
    assert e.value.body["error"]["type"] == "authentication_error"


def test_revoked_key_is_permission_denied(anth_with, keys):
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        anth_with(keys["revoked"]).messages.create(model="claude-sonnet", max_tokens=10, messages=HI)
    assert e.value.body["error"]["code"] == "virtual_key_revoked"


def test_model_outside_the_allowlist_is_permission_denied(anth_with, keys):
    with pytest.raises(anthropic.PermissionDeniedError):
        anth_with(keys["narrow"]).messages.create(model="claude-sonnet", max_tokens=10, messages=HI)


def test_rate_limit_is_a_rate_limit_error(anth_with, keys):
    client = anth_with(keys["rpm"])
    with pytest.raises(anthropic.RateLimitError):
        for _ in range(5):
            client.messages.create(model="claude-sonnet", max_tokens=10, messages=HI)


def test_budget_exhausted_is_a_402_status_error(anth_with, keys):
    with pytest.raises(anthropic.APIStatusError) as e:
        anth_with(keys["broke"]).messages.create(model="claude-sonnet", max_tokens=10, messages=HI)
    assert e.value.status_code == 402
    assert e.value.body["error"]["type"] == "billing_error"
    assert e.value.body["error"]["code"] == "budget_exceeded"


def test_unknown_model_is_not_found(anth):
    with pytest.raises(anthropic.NotFoundError):
        anth.messages.create(model="no-such-model", max_tokens=10, messages=HI)


def test_messages_served_by_gemini(anth):
    m = anth.messages.create(model="gemini-flash", max_tokens=100, messages=HI)
    assert m.content[0].text == "Hello from the fake Gemini."
    assert m.usage.input_tokens == 8 and m.usage.output_tokens == 4


def test_messages_stream_served_by_gemini(anth):
    with anth.messages.stream(model="gemini-flash", max_tokens=100, messages=HI) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Hello"
    assert final.usage.output_tokens == 2


def test_an_upstream_refusing_the_platforms_credential_is_not_the_callers_auth_error(anth):
    with pytest.raises(anthropic.InternalServerError) as e:
        anth.messages.create(model="gpt-locked", max_tokens=16, messages=HI)
    assert e.value.status_code == 502
    assert "sk-" not in str(e.value.body)
