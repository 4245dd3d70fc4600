"""OFREP mode: the testbed's evaluation scenarios through OpenFeature's Python
OFREP provider (openfeature-provider-ofrep, pinned in
tests/openfeature/requirements.txt) instead of its flagd provider.

run.sh copies this package into the run tree as tests/e2e/ofrep, beside the
flagd provider's own rpc/ and inprocess/ packages; the flag, context and event
steps are the flagd provider's own (tests/e2e/conftest.py imports them). Only
the step that makes a provider is ours: it starts the same launchpad config the
flagd steps would and registers an OFREP provider for tenant `testbed` (its
token, CONF_TENANT_TOKEN, in the Authorization header; OFREP has no anonymous
tenant).

Left out by tag: what OFREP has no counterpart for (connection loss and
grace periods, flagd's RPC cache, selectors naming flagd sources) and what the
flagd provider's packages leave out too (deprecated and v1 fractional).
"""
import os

import pytest
import requests
from pytest_bdd import given, parsers
from tests.e2e.flagd_container import PORT, FlagdContainer
from tests.e2e.testfilter import TestFilter

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider

feature_list = [
    "~grace",
    "~caching",
    "~deprecated",
    "~fractional-v1",
    "~metadata-provider",
]

# The launchpad config each provider kind starts, as the flagd steps'.
CONFIGS = {"stable": "default", "metadata": "metadata"}


def pytest_collection_modifyitems(config, items):
    TestFilter(config, feature_list=feature_list, base_path=__file__).filter_items(items)


@pytest.fixture()
def resolver_type():
    return None  # FlagdContainer.get_port ignores it: one port for everything


@given(
    parsers.cfparse("a {provider_type} flagd provider"), target_fixture="provider_type"
)
def setup_ofrep_provider(container: FlagdContainer, provider_type: str) -> str:
    config = CONFIGS[provider_type]  # a KeyError fails the scenario: no such OFREP provider
    response = requests.post(
        f"{container.get_launchpad_url()}/start?config={config}", timeout=15
    )
    response.raise_for_status()
    token = os.environ["CONF_TENANT_TOKEN"]
    api.set_provider(
        OFREPProvider(
            f"http://127.0.0.1:{PORT}",
            headers_factory=lambda: {"Authorization": f"Bearer {token}"},
        ),
        provider_type,
    )
    return provider_type
