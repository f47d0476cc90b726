"""The micromoment Faust transport: the worker's fetch wait and producer linger reach aiokafka."""

from __future__ import annotations

import faust
import pytest

import streams.settings as settings_module
from streams.settings import Settings, SettingsError
from streams.transport import SCHEME, Producer, Transport


@pytest.fixture
def linger_7(monkeypatch):
    monkeypatch.setattr(settings_module, "_cached",
                        Settings.from_env({"MICROMOMENT_PRODUCER_LINGER_MS": "7"}))


def test_the_producer_lingers_as_configured(linger_7):
    app = faust.App("transport-test", broker=f"{SCHEME}://127.0.0.1:1", autodiscover=False)
    assert isinstance(app.transport, Transport) and isinstance(app.producer, Producer)
    options = app.producer._settings_default()
    assert options["linger_ms"] == 7
    assert options["bootstrap_servers"] == ["127.0.0.1:1"]  # the rest is Faust's


def test_linger_defaults_to_2_ms_and_must_not_be_negative():
    assert Settings().producer_linger_ms == 2
    with pytest.raises(SettingsError, match="MICROMOMENT_PRODUCER_LINGER_MS"):
        Settings.from_env({"MICROMOMENT_PRODUCER_LINGER_MS": "-1"})
