"""Settings from the environment: every ``GRIDSYNC_*`` variable read into its typed field, and a bad
value stops the start with a message naming the variable and what it expects."""

from __future__ import annotations

from dataclasses import fields

import pytest

from server.settings import Settings, SettingsError


def _variable(name: str) -> str:
    return f"GRIDSYNC_{name.upper()}"


def test_no_variables_give_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_every_setting_is_read_from_its_variable() -> None:
    wanted = {
        spec.name: (
            default + 1 if isinstance(default, int) else "always" if spec.name == "secure_cookies" else "x"
        )
        for spec in fields(Settings)
        for default in [getattr(Settings(), spec.name)]
    }
    read = Settings.from_env({_variable(name): str(value) for name, value in wanted.items()})
    assert {spec.name: getattr(read, spec.name) for spec in fields(Settings)} == wanted


def test_a_value_that_is_not_a_number_names_its_variable() -> None:
    with pytest.raises(
        SettingsError, match="GRIDSYNC_MAX_BODY_BYTES must be a whole number; got '8MB'"
    ) as raised:
        Settings.from_env({"GRIDSYNC_MAX_BODY_BYTES": "8MB", "GRIDSYNC_TIMEZONE": "UTC"})
    assert raised.value.variable == "GRIDSYNC_MAX_BODY_BYTES"


def test_a_value_outside_its_choices_names_them() -> None:
    with pytest.raises(ValueError, match="GRIDSYNC_SECURE_COOKIES must be one of auto, always, never"):
        Settings.from_env({"GRIDSYNC_SECURE_COOKIES": "sometimes"})


def test_overrides_win_over_the_environment() -> None:
    settings = Settings.from_env(
        {"GRIDSYNC_SIGN_INS_PER_MINUTE": "7"}, sign_ins_per_minute=9, database_url="x"
    )
    assert (settings.sign_ins_per_minute, settings.database_url) == (9, "x")
