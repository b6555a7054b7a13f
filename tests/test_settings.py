"""Settings precedence: defaults < file < environment < flags."""

import pytest

from triage.errors import InputError
from triage.settings import Settings, load_settings


def test_precedence(tmp_path):
    config = tmp_path / "triage.toml"
    config.write_text('profile = "rcbf38"\nmax_matrix = 128\nsmoothing_fwhm_mm = 3.0\n')
    env = {"TRIAGE_MAX_MATRIX": "192", "TRIAGE_MODEL": "tikhonov"}
    settings = load_settings(config, environ=env, smoothing_fwhm_mm=4.5)
    assert settings == Settings(profile="rcbf38", model="tikhonov", max_matrix=192, smoothing_fwhm_mm=4.5)


def test_config_from_environment(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("motion_exclude_mm = 7\n")
    assert load_settings(environ={"TRIAGE_CONFIG": str(config)}).motion_exclude_mm == 7.0


@pytest.mark.parametrize(
    "text, message",
    [("profil = 'x'\n", "unknown setting(s) profil"), ("max_matrix = [\n", "not valid TOML")],
)
def test_bad_config_file(tmp_path, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(config, environ={})


def test_bad_environment_value():
    with pytest.raises(InputError, match="TRIAGE|max_matrix"):
        load_settings(environ={"TRIAGE_MAX_MATRIX": "big"})


def test_missing_config_file(tmp_path):
    with pytest.raises(InputError, match="cannot read config file"):
        load_settings(tmp_path / "nope.toml", environ={})
