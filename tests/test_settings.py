"""Settings precedence: defaults < file < environment < flags."""

from pathlib import Path

import pytest

from triage.base.errors import InputError
from triage.settings import Settings, load_settings


def test_precedence(tmp_path):
    config = tmp_path / "triage.toml"
    config.write_text('profile = "rcbf38"\nmax_matrix = 128\nsmoothing_fwhm_mm = 3.0\n')
    env = {"TRIAGE_MAX_MATRIX": "192", "TRIAGE_MODEL": "tikhonov"}
    settings = load_settings(config, environ=env, smoothing_fwhm_mm=4.5)
    assert settings == Settings().replace(profile="rcbf38", model="tikhonov", max_matrix=192, smoothing_fwhm_mm=4.5)


def test_config_from_environment(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("motion_exclude_mm = 7\n")
    assert load_settings(environ={"TRIAGE_CONFIG": str(config)}).analysis.motion_exclude_mm == 7.0


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


def test_node_defaults():
    s = Settings().node
    assert (s.dicom_port, s.ae_title, s.allow_aet, s.accept_any_aet, s.pacs, s.quiet_seconds) == (
        11112, "TRIAGE", (), False, "", 3.0)
    assert (s.http_port, s.max_jobs, s.data_dir) == (0, 2, Path("triage-data"))


def test_node_settings_from_file_environment_and_flags(tmp_path):
    config = tmp_path / "node.toml"
    config.write_text('allow_aet = ["CT1", "CT2"]\ndata_dir = "/srv/triage"\nquiet_seconds = 1.5\n'
                      'accept_any_aet = true\npacs = "PACS@10.0.0.5:104"\n')
    env = {"TRIAGE_ALLOW_AET": "ORTHANC, CT9,", "TRIAGE_ACCEPT_ANY_AET": "off", "TRIAGE_DICOM_PORT": "4242"}
    s = load_settings(config, environ=env).node
    assert s.allow_aet == ("ORTHANC", "CT9")
    assert (s.accept_any_aet, s.dicom_port, s.data_dir, s.quiet_seconds, s.pacs) == (
        False, 4242, Path("/srv/triage"), 1.5, "PACS@10.0.0.5:104")
    flagged = load_settings(config, environ=env, allow_aet=["MODALITY"], accept_any_aet=True).node
    assert (flagged.allow_aet, flagged.accept_any_aet) == (("MODALITY",), True)


@pytest.mark.parametrize("env, message", [
    ({"TRIAGE_ACCEPT_ANY_AET": "maybe"}, "accept_any_aet: 'maybe' is not a valid switch"),
    ({"TRIAGE_QUIET_SECONDS": "soon"}, "quiet_seconds: 'soon' is not a valid number"),
])
def test_bad_node_values(env, message):
    with pytest.raises(InputError, match=message):
        load_settings(environ=env)


def test_bad_node_values_in_file(tmp_path):
    config = tmp_path / "node.toml"
    config.write_text("allow_aet = 5\n")
    with pytest.raises(InputError, match="allow_aet: 5 is not a valid list of names"):
        load_settings(config, environ={})
    config.write_text("pacs = 104\n")
    with pytest.raises(InputError, match="pacs: 104 is not a valid text"):
        load_settings(config, environ={})


def test_model_names_are_the_pipelines_models():
    from models import MODELS
    from triage.settings import MODEL_NAMES

    assert set(MODEL_NAMES) == set(MODELS)


def test_trusted_proxies_from_file_environment_and_repeated_flag(tmp_path):
    from triage.cli import SERVE_OPTIONS, build_parser

    config = tmp_path / "node.toml"
    config.write_text('http_trusted_proxies = ["10.0.0.1"]\n')
    assert load_settings(config).node.http_trusted_proxies == ("10.0.0.1",)
    env = {"TRIAGE_HTTP_TRUSTED_PROXIES": "10.0.0.2, 10.0.0.3"}
    assert load_settings(config, environ=env).node.http_trusted_proxies == ("10.0.0.2", "10.0.0.3")
    args = build_parser().parse_args(["serve", "--data-dir", str(tmp_path), "--accept-any-aet",
                                      "--http-trusted-proxy", "192.168.1.4", "--http-trusted-proxy", "::1"])
    flagged = load_settings(config, environ=env, **{name: getattr(args, name) for name in SERVE_OPTIONS})
    assert flagged.node.http_trusted_proxies == ("192.168.1.4", "::1")
    unflagged = build_parser().parse_args(["serve", "--data-dir", str(tmp_path), "--accept-any-aet"])
    assert load_settings(config, **{name: getattr(unflagged, name) for name in SERVE_OPTIONS}
                         ).node.http_trusted_proxies == ("10.0.0.1",)
