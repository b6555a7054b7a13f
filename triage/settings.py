"""One settings object for the whole service, fed by defaults, a TOML file, environment and flags.

Precedence, lowest first: the defaults below, the file named by ``--config`` or the
``TRIAGE_CONFIG`` environment variable, ``TRIAGE_<FIELD>`` environment variables (e.g.
``TRIAGE_PROFILE=rcbf38``), then command-line flags.

The settings come in three sections: :class:`AnalysisSettings` (how a series is analysed),
:class:`NodeSettings` (the DICOM node) and :class:`AlertSettings` (the stroke team's alerts);
each part of the service takes only the sections it uses. Names are unique across the sections.
The TOML file holds them at its top level, e.g. ``profile = "rapid-like"`` or
``allow_aet = ["CT1", "PACS"]``, or in the table of their section::

    [analysis]
    profile = "rcbf38"

    [node]
    allow_aet = ["CT1", "PACS"]

    [alerts]
    webhook = ["https://stroke-team.example/hook"]

In the environment a list is comma-separated (``TRIAGE_ALLOW_AET=CT1,PACS``) and a switch is
``1/true/yes/on`` or ``0/false/no/off``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from triage.base.errors import InputError
from triage.base.language import check_language

ENV_PREFIX = "TRIAGE_"
# The names of models.MODELS (tests/test_settings.py checks it), kept here so that reading the
# settings does not import the models (SciPy).
MODEL_NAMES = ("gamma", "gamma-dispersed", "gamma-shapes", "exponential", "exponential-dispersed", "bcsvd", "tikhonov")


@dataclass(frozen=True)
class AnalysisSettings:
    """How a series is analysed (``triage analyze`` and the node's analyses; units in the names).

    profile : threshold profile name or JSON path (see ``models.profiles``)
    model : deconvolution model (``models.MODELS``): ``"gamma"`` (parametric fit of a delayed
        residue of gamma-distributed transit times, shape 2), ``"gamma-dispersed"`` (with a
        dispersion kernel searched in late tissue), ``"gamma-shapes"`` (the shape searched
        too), ``"exponential"`` (shape 1), ``"exponential-dispersed"``, ``"bcsvd"``
        (block-circulant SVD, oscillation-index regularised) or ``"tikhonov"``
    max_matrix : in-plane matrix the perfusion is computed on; larger acquisitions are
        block-averaged in-plane (512 → 256), maps are written back on the acquisition grid
    smoothing_fwhm_mm : spatial (Gaussian) FWHM of the edge-preserving bilateral filter of the
        tissue curves within the parenchyma before deconvolution (0 = no denoising); the
        dominant temporal components keep this scale
    coarse_fwhm_mm : in-plane smoothing of the weak temporal components, and of the curves
        that set the MTT of the parametric models (see ``triage.imaging.denoise.denoise_curves``)
    delay_mtt_fwhm_mm : the parametric models search each voxel's delay (Tmax) at its MTT
        smoothed within the parenchyma (geometric mean, Gaussian of this FWHM in every
        direction; 0 = at the voxel's own MTT): a noisy MTT moves the fitted delay against it
    motion_exclude_mm : frames displaced more than this are left out of the analysis
    language : ``"en"`` (English, the default) or ``"vi"`` (Vietnamese): the words of the
        pictures, the viewer and the alerts' text (``triage.base.language``); numbers, units
        and ``result.json``'s fields are the same in every language
    """

    profile: str = "rapid-like"
    model: str = "gamma"
    max_matrix: int = 256
    smoothing_fwhm_mm: float = 12.0
    coarse_fwhm_mm: float = 14.0
    delay_mtt_fwhm_mm: float = 16.0
    motion_exclude_mm: float = 10.0
    language: str = "en"


@dataclass(frozen=True)
class NodeSettings:
    """The DICOM node (``triage serve``): network, spool, jobs, web API.

    data_dir : spool, job database and results (``spool/``, ``triage.db``, ``results/``)
    listen_address, dicom_port, ae_title : where and as whom the storage SCP listens
    allow_aet : calling AE titles accepted; every other caller is rejected unless
        ``accept_any_aet`` (the node needs one of the two)
    pacs : where results are sent with C-STORE, ``"AET@HOST:PORT"`` (empty, and no
        ``pacs_dicomweb``: kept in ``results/`` only)
    pacs_dicomweb : where results are sent with DICOMweb STOW-RS instead, the server's base URL
        ``http(s)://[USER[:PASSWORD]@]HOST[:PORT]/PATH`` (POSTed to ``<URL>/studies``); one of
        ``pacs`` and ``pacs_dicomweb``, not both (see ``dicom_node.stow``)
    pacs_dicomweb_password_file : a file holding the password of the URL's user for HTTP Basic
        authentication (surrounding white space ignored)
    pacs_dicomweb_ca : PEM CA certificates an https DICOMweb server's certificate is verified
        against (empty: the system's trusted CAs)
    quiet_seconds : a series whose every slice position has every time point is complete
        once no instance arrived for this long while an open association is still on it (the
        sender may pause); once its senders moved on or released, a few of their own gaps
        between images suffice, and no wait at all when it holds every image its headers
        announce (``dicom_node.completion.required_quiet``)
    incomplete_warn_seconds : a perfusion series quiet this long with positions still missing
        time points is reported as incomplete (it is analysed once the rest arrives), or, when
        only its last time points lack slices (an aborted scan), its complete time points are
        analysed
    http_port : port of the web API and viewer (0 = off), on ``http_address`` (loopback by
        default: put a TLS reverse proxy in front to serve other machines)
    http_trusted_proxies : addresses of the reverse proxies whose ``X-Forwarded-Proto`` and
        ``X-Forwarded-For`` the web API believes (https: Secure cookies and HSTS; the client
        address of the audit log and login throttling); empty = never
    tls_cert, tls_key, tls_ca : PEM files for DICOM over TLS (all empty = plain TCP)
    pacs_tls : send to the PACS over DICOM TLS: ``tls_cert``/``tls_key`` as our client
        certificate, the PACS's certificate (and host name) verified against ``tls_ca``, else
        against the system's trusted CAs
    max_associations : simultaneous DICOM associations; max_jobs : simultaneous analyses
    max_connections_per_peer : simultaneous DICOM connections from one IP address (associated
        or not); further ones are closed at once and logged once a minute per address
    association_request_timeout : seconds a DICOM caller has for the TLS handshake, and again
        for its association request, before the node closes the connection; connections that
        have not associated take none of the ``max_associations`` slots
    spool_reserve_mb : free disk space (MiB) kept; below it instances are refused
        (out of resources) rather than filling the disk
    spool_journal_mb : size (MiB) of the spool's write-ahead journal, ``spool/.journal/ring``,
        which makes each received instance durable with one write before it is acknowledged
        and is filed into the spool's folders just after (0 = none: each instance is synced in
        its own file first, about 2 ms slower per image; see ``dicom_node.spool``)
    retention_days : a series whose last image arrived this long ago and whose work is done
        (analysed and sent, ignored, failed, or never complete) is removed with its results and
        records (0 = kept for ever); a series whose results wait for the PACS is kept
    queue : the hub's task queue, a Redis URL (``redis://HOST:PORT/DB``, Celery's broker): with
        it ``triage serve`` receives, spools, detects completion and queues, and ``triage
        worker`` processes run the analyses, DICOM export, sending and alerts (needs
        ``database``; empty = everything in the one ``triage serve`` process)
    database : the job store, a PostgreSQL URL (``postgresql://USER@HOST:PORT/NAME``) that the
        listener and every worker share (empty = the SQLite file ``DATA/triage.db``)
    metrics_port : port of a worker's Prometheus metrics (``/metrics``, 0 = off), on
        ``http_address``
    """

    data_dir: Path = Path("triage-data")
    listen_address: str = "0.0.0.0"
    dicom_port: int = 11112
    ae_title: str = "TRIAGE"
    allow_aet: tuple[str, ...] = ()
    accept_any_aet: bool = False
    pacs: str = ""
    pacs_dicomweb: str = ""
    pacs_dicomweb_password_file: str = ""
    pacs_dicomweb_ca: str = ""
    quiet_seconds: float = 3.0
    incomplete_warn_seconds: float = 30.0
    http_port: int = 0
    http_address: str = "127.0.0.1"
    http_trusted_proxies: tuple[str, ...] = ()
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    pacs_tls: bool = False
    max_associations: int = 8
    max_connections_per_peer: int = 16
    association_request_timeout: float = 5.0
    max_jobs: int = 2
    spool_reserve_mb: int = 1024
    spool_journal_mb: int = 1024
    retention_days: float = 7.0
    queue: str = ""
    database: str = ""
    metrics_port: int = 0


@dataclass(frozen=True)
class AlertSettings:
    """The stroke team's alerts (``triage serve --webhook``, see ``docs/alerts.md``).

    webhook : URLs (http or https) each result, failed analysis and incomplete perfusion series
        is POSTed to, as a signed JSON alert (see ``docs/alerts.md``); in the environment
        comma-separated
    webhook_secret, webhook_secret_file : the HMAC-SHA256 key signing the alerts (at least 16
        characters), or a file holding it (surrounding white space ignored); one of the two is
        needed with ``webhook``
    alert_patient_details : include the PatientID and PatientName in the alerts (default: no
        patient information)
    alert_fhir : also send each alert as a FHIR R4 DiagnosticReport (``application/fhir+json``)
    alert_expiry_hours : an alert not delivered after this many hours is given up (logged)
    public_url : base URL of the viewer in the alerts' links (default
        ``http://127.0.0.1:<http_port>``; with neither, the alerts have no links) and in the
        share links the web API makes (default: the base URL the admin's request came to)

    The chat and e-mail channels (each optional; the same outbox, retries and expiry as the
    webhooks; see ``docs/alerts.md``):

    slack_webhook : a Slack incoming-webhook URL (``https://hooks.slack.com/services/...``);
        the URL is the credential: keep the config file private
    teams_webhook : a Microsoft Teams incoming-webhook URL (a Workflows "post to a channel when
        a webhook request is received" URL), sent an Adaptive Card
    telegram_bot_token_file : a file holding the Telegram bot's token (surrounding white space
        ignored); with ``telegram_chat_id``, the chat (a number, or ``@channelname``) each alert
        is sent to with the Bot API's ``sendMessage`` (a result's summary picture first, with
        ``sendPhoto``)
    telegram_api_url : base URL of the Telegram Bot API (default ``https://api.telegram.org``)
    email_to : the addresses every alert is e-mailed to (one message to all of them; in the
        environment comma-separated)
    email_from : the sender's address (needed with ``email_to``)
    smtp_host, smtp_port : the mail server (submission port 587 by default)
    smtp_starttls : upgrade the SMTP connection with STARTTLS, verifying the server's
        certificate and host name (default on; off only for a relay on this machine, and never
        with ``smtp_user``)
    smtp_user, smtp_password_file : the SMTP account and a file holding its password
        (surrounding white space ignored); empty = no authentication
    """

    webhook: tuple[str, ...] = ()
    webhook_secret: str = ""
    webhook_secret_file: str = ""
    alert_patient_details: bool = False
    alert_fhir: bool = False
    alert_expiry_hours: float = 24.0
    public_url: str = ""
    slack_webhook: str = ""
    teams_webhook: str = ""
    telegram_bot_token_file: str = ""
    telegram_chat_id: str = ""
    telegram_api_url: str = "https://api.telegram.org"
    email_to: tuple[str, ...] = ()
    email_from: str = ""
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_user: str = ""
    smtp_password_file: str = ""


SECTIONS = {"analysis": AnalysisSettings, "node": NodeSettings, "alerts": AlertSettings}
SECTION_OF = {f.name: section for section, kind in SECTIONS.items() for f in fields(kind)}


@dataclass(frozen=True)
class Settings:
    """Every setting, in three sections: ``analysis``, ``node`` and ``alerts``.

    Field names are unique across the sections, so a flat name (``quiet_seconds``) names one
    setting in the TOML file, the environment and :meth:`replace`.
    """

    analysis: AnalysisSettings = AnalysisSettings()
    node: NodeSettings = NodeSettings()
    alerts: AlertSettings = AlertSettings()

    def replace(self, **changes) -> "Settings":
        """A copy with the given fields (flat names) changed; ``None`` values are ignored."""
        by_section: dict[str, dict] = {}
        for name, value in changes.items():
            if name not in SECTION_OF:
                raise TypeError(f"no setting {name!r}")
            if value is not None:
                by_section.setdefault(SECTION_OF[name], {})[name] = value
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **values)
                                            for section, values in by_section.items()})


SWITCH_WORDS = {"1": True, "true": True, "yes": True, "on": True,
                "0": False, "false": False, "no": False, "off": False}
KIND_NAMES = {bool: "switch (true/false)", tuple: "list of names", float: "number", int: "integer",
              str: "text"}


def _coerce(name: str, kind: type, value) -> object:
    converted = _convert(kind, value)
    if converted is None:
        raise InputError(f"setting {name}: {value!r} is not a valid {KIND_NAMES.get(kind, 'path')}")
    return converted


def _convert(kind: type, value):
    """``value`` as a ``kind``, or None when it is not one."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        return SWITCH_WORDS.get(value.strip().lower()) if isinstance(value, str) else None
    if kind is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, (list, tuple)) and all(isinstance(v, str) for v in items):
            return tuple(v.strip() for v in items if v.strip())
        return None
    if kind is str:
        return value if isinstance(value, str) else None
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


def _kind(default) -> type:
    return Path if isinstance(default, Path) else type(default)


def _read_file(path: Path, kinds: dict[str, type]) -> dict:
    """The flat settings of a TOML file: top-level names, or names in a section's table."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"config file {path} is not valid TOML: {exc}") from None
    values, unknown = {}, []
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            for name, item in value.items():
                if SECTION_OF.get(name) != key:
                    unknown.append(f"{key}.{name}")
                elif name in values:
                    raise InputError(f"config file {path}: {name} is set twice ({key}.{name} and {name})")
                values[name] = item
        elif key in kinds:
            if key in values:
                raise InputError(f"config file {path}: {key} is set twice ({SECTION_OF[key]}.{key} and {key})")
            values[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise InputError(f"config file {path}: unknown setting(s) {', '.join(sorted(unknown))}")
    return values


def load_settings(config_file: Path | None = None, environ: dict | None = None, **flags) -> Settings:
    """Settings from defaults, ``config_file`` (or ``$TRIAGE_CONFIG``), environment, then ``flags``
    (flat names, e.g. ``quiet_seconds=1.5``)."""
    environ = os.environ if environ is None else environ
    kinds = {f.name: _kind(f.default) for kind in SECTIONS.values() for f in fields(kind)}
    values: dict = {}
    config_file = config_file or environ.get(ENV_PREFIX + "CONFIG")
    if config_file:
        values.update(_read_file(Path(config_file), kinds))
    for name in kinds:
        env_value = environ.get(ENV_PREFIX + name.upper())
        if env_value is not None:
            values[name] = env_value
    values.update({k: v for k, v in flags.items() if v is not None})
    settings = Settings().replace(**{k: _coerce(k, kinds[k], v) for k, v in values.items()})
    check_language(settings.analysis.language)
    return settings
