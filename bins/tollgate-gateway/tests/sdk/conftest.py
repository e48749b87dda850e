"""Shared fixtures: the gateway and keys prepared by the Rust driver (tests/it/sdk.rs).

The driver starts a fake upstream that answers every dialect, a standalone gateway with
providers of each kind pointing at it, and keys in each state, then runs pytest with
their addresses in the environment. Run on its own, this suite skips.
"""
import os

import anthropic
import openai
import pytest


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} not set: run through `cargo test` (tests/it/sdk.rs)")
    return value


@pytest.fixture
def base():
    return env("TG_BASE")


@pytest.fixture
def keys():
    return {
        name: env(f"TG_KEY_{name.upper()}")
        for name in ["ok", "revoked", "narrow", "rpm", "broke"]
    }


@pytest.fixture
def oai(base, keys):
    return openai.OpenAI(api_key=keys["ok"], base_url=f"{base}/v1", max_retries=0, timeout=20)


@pytest.fixture
def oai_with():
    def make(key):
        return openai.OpenAI(api_key=key, base_url=f"{env('TG_BASE')}/v1", max_retries=0, timeout=20)

    return make


@pytest.fixture
def anth(base, keys):
    return anthropic.Anthropic(api_key=keys["ok"], base_url=base, max_retries=0, timeout=20)


@pytest.fixture
def anth_with():
    def make(key):
        return anthropic.Anthropic(api_key=key, base_url=env("TG_BASE"), max_retries=0, timeout=20)

    return make
