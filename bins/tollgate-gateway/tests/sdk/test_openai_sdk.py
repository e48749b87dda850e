"""The official `openai` SDK against tollgate: plain, streaming, tools, embeddings,
Responses, the models list, translation to Anthropic and Gemini upstreams, and every
error raising the SDK's own exception class."""
import openai
import pytest

HI = [{"role": "user", "content": "Say hello"}]


def test_chat_plain(oai):
    r = oai.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert r.choices[0].message.content == "Hello from the fake upstream."
    assert r.usage.prompt_tokens == 12 and r.usage.completion_tokens == 5


def test_chat_stream_without_usage_chunk(oai):
    chunks = list(oai.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello"
    # The gateway asked the upstream for usage; the caller did not, so it never sees it.
    assert all(c.choices for c in chunks), chunks
    assert all(c.usage is None for c in chunks)


def test_chat_stream_with_usage_chunk(oai):
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o-mini", messages=HI, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].usage.prompt_tokens == 9
    assert chunks[-1].usage.completion_tokens == 2


def test_chat_with_tools_and_unknown_fields(oai):
    r = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=HI,
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ],
        tool_choice="auto",
        response_format={"type": "json_object"},
        seed=7,
        n=1,
        logprobs=True,
        max_completion_tokens=50,
        extra_body={"future_field": {"nested": [1, 2, 3]}},
    )
    assert r.choices[0].message.content == "Hello from the fake upstream."


def test_chat_served_by_anthropic(oai):
    r = oai.chat.completions.create(model="claude-sonnet", messages=HI, max_tokens=100)
    assert r.choices[0].message.content == "Hello from the fake Anthropic."
    assert r.model == "claude-sonnet"
    assert r.choices[0].finish_reason == "stop"
    # Anthropic counts cache reads apart; the OpenAI shape counts them in the prompt.
    assert r.usage.prompt_tokens == 20 and r.usage.completion_tokens == 7


def test_chat_stream_served_by_anthropic(oai):
    chunks = list(
        oai.chat.completions.create(
            model="claude-sonnet", messages=HI, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello"
    assert chunks[-1].usage.completion_tokens == 3


def test_chat_served_by_gemini(oai):
    r = oai.chat.completions.create(model="gemini-flash", messages=HI)
    assert r.choices[0].message.content == "Hello from the fake Gemini."
    assert r.usage.prompt_tokens == 8


def test_chat_stream_served_by_gemini(oai):
    chunks = list(oai.chat.completions.create(model="gemini-flash", messages=HI, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello"


def test_embeddings(oai):
    r = oai.embeddings.create(model="text-embedding-3-small", input="hello")
    assert len(r.data[0].embedding) == 3
    assert r.usage.prompt_tokens == 6


def test_responses(oai):
    r = oai.responses.create(model="gpt-4o-mini", input="Say hello")
    assert r.output_text == "Hello from Responses."


def test_responses_stream(oai):
    events = list(oai.responses.create(model="gpt-4o-mini", input="Say hello", stream=True))
    assert events[-1].type == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "Hello"


def test_models_list_shows_only_what_the_key_may_use(oai, oai_with, keys):
    ids = sorted(m.id for m in oai.models.list())
    assert {"gpt-4o-mini", "claude-sonnet", "gemini-flash", "text-embedding-3-small"} <= set(ids)
    narrow = sorted(m.id for m in oai_with(keys["narrow"]).models.list())
    assert narrow == ["gpt-4o-mini"]


def test_unknown_key_is_an_authentication_error(oai_with):
    with pytest.raises(openai.AuthenticationError) as e:
        oai_with("tg_notarealkey").chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert e.value.status_code == 401
    assert e.value.code == "invalid_api_key"


def test_revoked_key_is_permission_denied(oai_with, keys):
    with pytest.raises(openai.PermissionDeniedError) as e:
        oai_with(keys["revoked"]).chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert e.value.code == "virtual_key_revoked"


def test_model_outside_the_allowlist_is_permission_denied(oai_with, keys):
    with pytest.raises(openai.PermissionDeniedError) as e:
        oai_with(keys["narrow"]).chat.completions.create(model="claude-sonnet", messages=HI)
    assert e.value.code == "model_not_allowed"


def test_unknown_model_is_not_found(oai):
    with pytest.raises(openai.NotFoundError) as e:
        oai.chat.completions.create(model="no-such-model", messages=HI)
    assert e.value.code == "model_not_found"


def test_rate_limit_is_a_rate_limit_error(oai_with, keys):
    client = oai_with(keys["rpm"])
    with pytest.raises(openai.RateLimitError) as e:
        for _ in range(5):
            client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert e.value.code == "rate_limit_exceeded"
    assert int(e.value.response.headers["retry-after"]) >= 1


def test_budget_exhausted_is_a_402_status_error(oai_with, keys):
    with pytest.raises(openai.APIStatusError) as e:
        oai_with(keys["broke"]).chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert e.value.status_code == 402
    assert e.value.code == "budget_exceeded"
    assert e.value.body["meta"]["scope"] == "virtual_key"


def test_malformed_request_is_a_bad_request(oai):
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_body={"stream": "yes"})


def test_an_upstream_refusing_the_platforms_credential_is_not_the_callers_auth_error(oai):
    # The caller's key is fine: its SDK must not report an authentication error of its own.
    with pytest.raises(openai.InternalServerError) as e:
        oai.chat.completions.create(model="gpt-locked", messages=HI)
    assert e.value.status_code == 502
    assert e.value.code == "upstream_error"
    assert e.value.body["meta"]["upstream_status"] == 401
    assert "sk-" not in str(e.value.body), "the upstream's message, quoting the platform's key, is not shown"
