"""Command line: ``triage analyze INPUT --out OUT``, ``triage serve`` (the DICOM node),
``triage worker`` (a hub's worker), ``triage user`` (the web API's accounts) and ``triage demo``
(the whole loop on a phantom).

Errors in the input end the run with ``error: <one-line reason>`` on stderr and exit status 2;
an internal failure says which stage failed and exits 3. Tracebacks are shown only with
``--debug``. Research use only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from models.profiles import available_profiles
from triage import __version__
from triage.analysis import voxel_argument
from triage.base.dicom_header import quiet_reading_validation
from triage.base.errors import EXIT_INPUT, EXIT_INTERNAL, InputError
from triage.base.language import LANGUAGES
from triage.settings import MODEL_NAMES, AlertSettings, NodeSettings, load_settings
from triage.web import user_command


class Progress:
    """Stage lines on stderr: ``[  0.4 s] motion correction``."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[{time.perf_counter() - self.start:6.1f} s] {message}", file=sys.stderr, flush=True)


def _parse_nihss(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 42:
        raise argparse.ArgumentTypeError("NIHSS is 0 to 42")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="triage", description="CT perfusion stroke triage (research use only).")
    parser.add_argument("--version", action="version", version=f"stroke-triage {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    analyze = commands.add_parser("analyze", help="analyse the CT perfusion series in a directory of DICOM files")
    analyze.add_argument("input", type=Path, help="directory of DICOM files (any nesting and names)")
    analyze.add_argument("--out", type=Path, required=True, help="output directory")
    analyze.add_argument("--series", metavar="UID", help="analyse only this Series Instance UID")
    analyze.add_argument("--profile", help=f"threshold profile name or JSON file ({', '.join(available_profiles())})")
    analyze.add_argument("--model", choices=MODEL_NAMES,
                         help="deconvolution model: exponential (parametric fit, default), bcsvd, tikhonov")
    analyze.add_argument("--age", type=float, help="patient age in years (default: from DICOM)")
    analyze.add_argument("--nihss", type=_parse_nihss, help="NIHSS score, for the DAWN criteria")
    analyze.add_argument("--aif", type=voxel_argument, metavar="X,Y,Z",
                         help="force the AIF at this source-image column,row,slice (0-based)")
    analyze.add_argument("--allow-incomplete-end", action="store_true",
                         help="analyse the complete time points when the last ones lack slices, e.g. "
                              "an aborted scan; a warning says what was left out")
    analyze.add_argument("--language", choices=LANGUAGES,
                         help="language of the pictures' words: en (English, default) or vi (Vietnamese)")
    analyze.add_argument("--config", type=Path, help="TOML settings file (see triage.settings)")
    analyze.add_argument("--quiet", action="store_true", help="no progress lines")
    analyze.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    _add_serve(commands)
    _add_worker(commands)
    user_command.add_parser(commands)
    _add_demo(commands)
    return parser


def _add_demo(commands) -> None:
    demo = commands.add_parser(
        "demo", help="try the whole loop: a phantom study sent to a node over DICOM, its alert printed",
        description="Generates a synthetic CT perfusion study (known truth), sends it with DICOM to a node, "
                    "receives the node's signed alert on a loopback HTTP port and prints it beside the "
                    "truth, with the viewer link. Without --node it starts a node of its own (and an "
                    "admin user 'demo' for the viewer) and keeps it running until Ctrl-C. "
                    "Research use only.")
    demo.add_argument("--case", default="mismatch", help="phantom case (default mismatch)")
    demo.add_argument("--work", type=Path, default=Path("triage-demo"),
                      help="folder for the study, the node's data and its log (an earlier demo's "
                           "folder is emptied first, any other must be empty; default ./triage-demo)")
    demo.add_argument("--node", metavar="AET@HOST:PORT",
                      help="send to this running node instead (its --webhook must point at --listen)")
    demo.add_argument("--listen", metavar="HOST:PORT",
                      help="where the alert is received (default a free loopback port)")
    demo.add_argument("--secret", help="the node's webhook secret, to check the alert's signature")
    demo.add_argument("--timeout", type=float, default=180.0,
                      help="seconds to wait for the alert (default 180)")
    demo.add_argument("--exit-after-alert", action="store_true",
                      help="stop the node and exit once the alert is printed")


def print_summary(result: dict, out_dir: Path) -> None:
    """One screen for a human at the terminal."""
    e = result["eligibility"]
    ratio = result["mismatch_ratio"]
    lines = [
        "",
        f"Series {result['series_uid']}  ({result['series_description']})",
        f"  {'Core (rCBF < ' + format(result['profile']['core_rcbf_below'], '.0%') + ')':<24}{result['core_ml']:8.1f} mL",
        f"  Tmax > 6 s              {result['tmax6_ml']:8.1f} mL",
        f"  Tmax > 10 s             {result['tmax10_ml']:8.1f} mL",
        f"  Mismatch                {result['mismatch_ml']:8.1f} mL   ratio {'n/a' if ratio is None else ratio}",
        f"  HIR                     {'n/a' if result['hir'] is None else format(result['hir'], '8.2f')}",
        f"  DEFUSE 3 (imaging)      {'ELIGIBLE' if e['defuse3'] else 'not eligible'} - {e['reasons']['defuse3']}",
        f"  DAWN                    {e['reasons']['dawn']}",
        f"  Reference               {result['reference']['method']} = {result['reference']['cbf']} mL/100 g/min",
    ]
    warnings = result["quality"]["warnings"]
    level = result["quality"]["level"].upper()
    lines.append(f"  Quality                 {level}" + (", no warnings" if not warnings else ", warnings:"))
    lines += [f"    ! {w}" for w in warnings]
    lines += [
        f"  Time                    {result['timings_s']['total']:.1f} s",
        f"  Output                  {out_dir}/result.json, summary.png, maps/, images/",
        "  Research use only: not for clinical decisions; verify against the source images.",
    ]
    print("\n".join(lines))


def run_analyze(args) -> int:
    from triage.analysis import AnalysisRequest, analyse_directory

    settings = load_settings(args.config, profile=args.profile, model=args.model, language=args.language)
    request = AnalysisRequest(args.input, args.out, series_uid=args.series, settings=settings.analysis,
                              age=args.age, nihss=args.nihss, aif_xyz=args.aif,
                              allow_incomplete_end=args.allow_incomplete_end)
    for analysed in analyse_directory(request, progress=Progress(args.quiet)):
        print_summary(analysed.result, analysed.folder.path)
    return 0


def _add_serve(commands) -> None:
    d, a = NodeSettings, AlertSettings  # defaults, for the help text
    serve = commands.add_parser(
        "serve", help="run the DICOM node: receive CT perfusion, analyse it, send the results to PACS",
        description="DICOM node: receives CT perfusion series (C-STORE), analyses each complete series "
                    "and sends the results (Secondary Capture, Segmentation, SR) to the PACS. Every "
                    "option can also be set in the --config file or as TRIAGE_<NAME> in the "
                    "environment (e.g. TRIAGE_ALLOW_AET=CT1,PACS). Stops gracefully on SIGTERM. "
                    "Research use only.")
    add = serve.add_argument
    add("--config", type=Path, metavar="FILE", help="TOML settings file (see triage.settings)")
    add("--data-dir", type=Path, metavar="DIR",
        help=f"spool, job database and results (default ./{d.data_dir})")
    add("--listen-address", metavar="ADDRESS", help=f"address the DICOM port binds to (default {d.listen_address})")
    add("--dicom-port", type=int, metavar="PORT", help=f"DICOM port (default {d.dicom_port})")
    add("--ae-title", metavar="AET", help=f"our AE title (default {d.ae_title})")
    add("--allow-aet", action="append", metavar="NAME",
        help="calling AE title allowed to connect (repeatable); every other caller is rejected. "
             "One of --allow-aet and --accept-any-aet is required")
    add("--accept-any-aet", action="store_true", default=None,
        help="accept associations from any calling AE title")
    add("--pacs", metavar="AET@HOST:PORT", help="where results are sent (C-STORE); unset, and no --pacs-dicomweb: "
        "results stay in DIR/results")
    _add_dicomweb_options(add)
    add("--quiet-seconds", type=float, metavar="S",
        help="a series whose every slice position has every time point is complete after S seconds "
             "without new images while its sender's association is still open on it; once the sender "
             "moved on or released, after 4 of its own longest gaps between images (at least 0.3 s), "
             f"and at once when the headers' image count is reached (default {d.quiet_seconds:g})")
    add("--incomplete-warn-seconds", type=float, metavar="S",
        help="after S quiet seconds, report a perfusion series still missing images, or analyse "
             "its complete time points when only the last ones lack slices (an aborted scan) "
             f"(default {d.incomplete_warn_seconds:g})")
    add("--http-port", type=int, metavar="PORT",
        help=f"port of the web API and viewer, 0 = off (default {d.http_port}); users: triage user")
    add("--http-address", metavar="ADDRESS",
        help=f"address the HTTP port binds to (default {d.http_address})")
    add("--http-trusted-proxy", dest="http_trusted_proxies", action="append", metavar="ADDRESS",
        help="address of a reverse proxy whose X-Forwarded-Proto and X-Forwarded-For are believed "
             "(repeatable; default none: the headers are ignored)")
    add("--webhook", action="append", metavar="URL",
        help="URL each result, failed analysis and incomplete perfusion series is POSTed to as a "
             "signed JSON alert (repeatable; see docs/alerts.md); needs --webhook-secret-file or webhook_secret "
             "(config file or TRIAGE_WEBHOOK_SECRET: a secret on the command line is visible to "
             "every user of the machine)")
    add("--webhook-secret-file", metavar="FILE",
        help="file holding the HMAC-SHA256 key (at least 16 characters) that signs the alerts")
    add("--alert-patient-details", action="store_true", default=None,
        help="include the PatientID and PatientName in the alerts (default: no patient information)")
    add("--alert-fhir", action="store_true", default=None,
        help="also send each alert as a FHIR R4 DiagnosticReport (application/fhir+json)")
    add("--alert-expiry-hours", type=float, metavar="H",
        help=f"give up an alert not delivered after H hours (default {a.alert_expiry_hours:g})")
    add("--public-url", metavar="URL",
        help="base URL of the viewer for the links in the alerts (default http://127.0.0.1:<http-port>)")
    _add_channel_options(add)
    add("--tls-cert", metavar="PEM", help="certificate for DICOM over TLS (with --tls-key)")
    add("--tls-key", metavar="PEM", help="private key for DICOM over TLS")
    add("--tls-ca", metavar="PEM", help="CA certificates that callers must be signed by")
    add("--pacs-tls", action="store_true", default=None,
        help="send to the PACS over DICOM TLS (our --tls-cert/--tls-key; the PACS's certificate and "
             "host name verified against --tls-ca, else the system's CAs)")
    add("--max-associations", type=int, metavar="N",
        help=f"simultaneous DICOM associations (default {d.max_associations})")
    add("--max-connections-per-peer", type=int, metavar="N",
        help=f"simultaneous DICOM connections from one IP address (default {d.max_connections_per_peer})")
    add("--association-request-timeout", type=float, metavar="S",
        help="seconds a DICOM caller has for the TLS handshake and again for its association request "
             f"(default {d.association_request_timeout:g})")
    add("--max-jobs", type=int, metavar="N", help=f"simultaneous analyses (default {d.max_jobs})")
    add("--spool-reserve-mb", type=int, metavar="MIB",
        help=f"free disk space kept; below it images are refused (default {d.spool_reserve_mb})")
    add("--spool-journal-mb", type=int, metavar="MIB",
        help="write-ahead journal that makes each received image durable with one write; "
             f"0 = sync each image's own file first (default {d.spool_journal_mb})")
    add("--retention-days", type=float, metavar="DAYS",
        help="remove a series, its images and results this many days after its last image once its "
             f"work is done (results sent); 0 = keep for ever (default {d.retention_days:g})")
    _add_hub_options(add)


def _add_dicomweb_options(add) -> None:
    add("--pacs-dicomweb", metavar="URL",
        help="send results with DICOMweb STOW-RS to this base URL instead of C-STORE, e.g. "
             "https://pacs.example/dicom-web (POSTed to URL/studies; USER@ in it for Basic "
             "authentication); not with --pacs")
    add("--pacs-dicomweb-password-file", metavar="FILE",
        help="file holding the password of the --pacs-dicomweb URL's user (a password on the command "
             "line is visible to every user of the machine)")
    add("--pacs-dicomweb-ca", metavar="PEM",
        help="CA certificates an https --pacs-dicomweb server is verified against (default: the "
             "system's trusted CAs)")


def _add_channel_options(add) -> None:
    """The chat and e-mail channels of the alerts (docs/alerts.md)."""
    add("--slack-webhook", metavar="URL", help="Slack incoming-webhook URL the alerts are posted to")
    add("--teams-webhook", metavar="URL",
        help="Microsoft Teams incoming-webhook (Workflows) URL the alerts are posted to as Adaptive Cards")
    add("--telegram-bot-token-file", metavar="FILE",
        help="file holding the Telegram bot token (with --telegram-chat-id)")
    add("--telegram-chat-id", metavar="ID", help="the Telegram chat the bot writes the alerts to")
    add("--telegram-api-url", metavar="URL",
        help=f"base URL of the Telegram Bot API (default {AlertSettings.telegram_api_url})")
    add("--email-to", action="append", metavar="ADDRESS",
        help="e-mail the alerts to ADDRESS (repeatable: one message to all); needs --email-from and --smtp-host")
    add("--email-from", metavar="ADDRESS", help="the alerts' sender address")
    add("--smtp-host", metavar="HOST", help="the mail server the alerts are sent through")
    add("--smtp-port", type=int, metavar="PORT", help=f"its port (default {AlertSettings.smtp_port})")
    add("--no-smtp-starttls", dest="smtp_starttls", action="store_false", default=None,
        help="send without STARTTLS (only to a relay on this machine; never with --smtp-user)")
    add("--smtp-user", metavar="USER", help="SMTP account (with --smtp-password-file; over TLS only)")
    add("--smtp-password-file", metavar="FILE", help="file holding the SMTP account's password")


def _add_hub_options(add) -> None:
    add("--queue", metavar="URL",
        help="a hub's task queue (redis://HOST:PORT/DB): the listener queues, `triage worker` processes "
             "analyse, send and alert; needs --database")
    add("--database", metavar="URL",
        help="the job store shared by a hub's listener and workers (postgresql://USER@HOST:PORT/NAME; "
             "default: the SQLite file DIR/triage.db)")


def _add_worker(commands) -> None:
    worker = commands.add_parser(
        "worker", help="run a hub worker: analyses, DICOM export, sending and alerts of a hub's queued jobs",
        description="A hub's worker (Celery): takes the jobs that `triage serve --queue URL --database URL` "
                    "queued, analyses the series from the shared data directory, sends the results to "
                    "the PACS and delivers the alerts. Every process of a hub reads the same --config "
                    "file; the data directory is shared (the same path on every machine). Stops on "
                    "SIGTERM, putting its running analyses back in the queue. Research use only.")
    add = worker.add_argument
    add("--config", type=Path, metavar="FILE", help="TOML settings file, the one the listener reads")
    add("--data-dir", type=Path, metavar="DIR", help="the hub's shared data directory (spool, results)")
    _add_hub_options(add)
    _add_dicomweb_options(add)
    add("--max-jobs", type=int, metavar="N",
        help=f"tasks this worker runs at once (default {NodeSettings.max_jobs})")
    add("--metrics-port", type=int, metavar="PORT",
        help="port of this worker's Prometheus metrics, /metrics on the http_address setting "
             "(loopback by default); 0 = off (the default)")


DICOMWEB_OPTIONS = ("pacs_dicomweb", "pacs_dicomweb_password_file", "pacs_dicomweb_ca")
SERVE_OPTIONS = ("data_dir", "listen_address", "dicom_port", "ae_title", "allow_aet", "accept_any_aet",
                 "pacs", *DICOMWEB_OPTIONS, "quiet_seconds", "incomplete_warn_seconds", "http_port", "http_address",
                 "http_trusted_proxies", "webhook",
                 "tls_cert", "tls_key", "tls_ca", "pacs_tls", "max_associations",
                 "max_connections_per_peer", "association_request_timeout", "max_jobs", "spool_reserve_mb",
                 "spool_journal_mb", "retention_days", "webhook_secret_file", "alert_patient_details", "alert_fhir",
                 "alert_expiry_hours", "public_url", "queue", "database", "slack_webhook", "teams_webhook",
                 "telegram_bot_token_file", "telegram_chat_id", "telegram_api_url", "email_to", "email_from",
                 "smtp_host", "smtp_port", "smtp_starttls", "smtp_user", "smtp_password_file")
WORKER_OPTIONS = ("data_dir", "queue", "database", *DICOMWEB_OPTIONS, "max_jobs", "metrics_port")


def run_serve(args) -> int:
    from triage.node.node import serve  # the networking stack is not needed by `analyze`

    settings = load_settings(args.config, **{name: getattr(args, name) for name in SERVE_OPTIONS})
    return serve(settings, config_file=args.config)


def run_worker(args) -> int:
    from triage.hub.worker import run_worker  # Celery is needed by a hub only

    settings = load_settings(args.config, **{name: getattr(args, name) for name in WORKER_OPTIONS})
    return run_worker(settings, config_file=args.config)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stage = args.command
    quiet_reading_validation()
    try:
        if args.command == "analyze":
            return run_analyze(args)
        if args.command == "serve":
            return run_serve(args)
        if args.command == "worker":
            return run_worker(args)
        if args.command == "user":
            return user_command.run(args)
        if args.command == "demo":
            from triage.demo import run_demo
            return run_demo(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted: no result written", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: say what failed, never a bare traceback
        if getattr(args, "debug", False):
            raise
        print(f"error: internal failure during {stage}: {type(exc).__name__}: {exc} (no result written; "
              "rerun with --debug and report it)", file=sys.stderr)
        return EXIT_INTERNAL
    return 0


if __name__ == "__main__":
    sys.exit(main())
