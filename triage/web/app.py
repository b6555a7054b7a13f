"""The web API and the viewer's pages (FastAPI), over a node's data directory.

Routes (all need a session cookie from ``POST /api/login`` or ``Authorization: Bearer <API
token>``, except ``GET /healthz``, the login itself, the login page and the static files the
pages and the API documentation load; a page opened without a session redirects to ``/login?next=<its path>``):

- ``POST /api/login`` ``{"username", "password"}`` → 200 and an HttpOnly, SameSite=Strict
  session cookie (``SESSION_HOURS``); 401 on a wrong name or password, 429 after too many
  failures for the name or from the address (:meth:`Accounts.throttled`);
  ``POST /api/logout``; ``GET /api/me`` → ``{"username", "role"}``.
- ``GET /api/studies``, ``GET /api/studies/{id}`` (see :mod:`triage.web.studies`).
- ``GET /api/studies/{id}/maps/{name}/{z}.png``, ``.../overlays/{core|hypoperfusion}/{z}.png``,
  ``.../maps/{name}/colorbar.png``, ``.../summary.png``, ``.../images/{name}.png``: of the
  shown generation, or of ``?generation=N``; see :mod:`triage.web.slices`. Each carries an
  ETag naming its generation and when its result was written (a generation's files never
  change): revalidated when the URL names no generation, else cached for a day.
- ``POST /api/studies/{id}/reprocess`` (admin) ``{"aif": [x, y, z]?, "profile": str?}`` → 202
  ``{"generation": n}``: the series analysed again as a new generation with ``--aif X,Y,Z``
  (source-image column, row, slice; within the acquisition matrix and slice count) and
  ``--profile`` (one of :func:`models.profiles.available_profiles`).
- ``GET /api/audit`` (admin): the audit log, newest first.
- ``GET /metrics``: Prometheus text (:mod:`triage.web.metrics`); ``GET /docs``: the OpenAPI
  description (``/openapi.json``) in Swagger UI (its files from the ``fastapi-offline``
  package under ``/docs-assets/``: no CDN needed).
- Pages ``/``, ``/studies/{id}``, ``/login`` (``static/index.html``, ``study.html``,
  ``login.html`` in the one layout ``static/layout.html``: :mod:`triage.web.pages`) and ``/static/``.

Every request for a study by a user is written to the audit log (``open_study``, once per user
and study within ``AUDIT_REPEAT_S``), as are logins, failed logins, logouts and re-runs.
Research use only.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import fastapi_offline
import pydicom
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from models.profiles import available_profiles
from triage import __version__
from triage.report.folder import ResultFolder
from triage.store.jobs import JobStore
from triage.web import metrics, pages, slices
from triage.web.accounts import SESSION_HOURS, Accounts, User
from triage.web.studies import MAP_NAMES, OVERLAY_NAMES, Studies, Study

log = logging.getLogger("triage.web")

STATIC_DIR = Path(__file__).parent / "static"
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"  # Swagger UI, served here: no CDN
DOCS_ASSETS_URL = "/docs-assets"
COOKIE = "triage_session"
AUDIT_REPEAT_S = 600.0
IMAGE_NAME = re.compile(r"[a-z0-9_]{1,32}")
REVALIDATE = "private, no-cache"
PINNED = "private, max-age=86400, immutable"  # a day: see _Shared.result_png
PNG = "image/png"
SLICE_LAYERS = {"maps": (MAP_NAMES, slices.map_png), "overlays": (OVERLAY_NAMES, slices.overlay_png)}


class Login(BaseModel):
    username: str
    password: str


class Reprocess(BaseModel):
    aif: list[int] | None = Field(default=None, min_length=3, max_length=3,
                                  description="source-image column x, row y, slice z (0-based)")
    profile: str | None = Field(default=None, description="threshold profile name")


def create_app(data_dir: Path, store: JobStore, *,
               reprocess: Callable[[str, dict], int | None] | None = None) -> FastAPI:
    """The application over ``data_dir`` (``triage.db``, ``results/``) and its job store.

    ``reprocess(series_uid, options)`` queues a re-run and returns its generation (None when
    the series cannot be re-run now); by default :meth:`JobStore.reprocess` (the node passes
    its own, which also stops the older generation's running analysis and wakes a worker).
    """
    data_dir = Path(data_dir)
    shared = _Shared(store, Accounts(store), Studies(store, data_dir / "results"))
    if reprocess is None:
        def reprocess(series_uid: str, options: dict) -> int | None:
            started = store.reprocess(series_uid, options)
            return None if started is None else started.number

    app = FastAPI(title="stroke-triage", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None, description="CT perfusion triage node (research use only).")
    _add_session_routes(app, shared)
    _add_study_routes(app, shared)
    _add_admin_routes(app, shared, reprocess)
    _add_monitoring_routes(app, shared)
    _add_page_routes(app, shared)
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    return app


class _Shared:
    """What the routes share: the job store, the accounts, the studies and the in-memory record
    of recent study opens; the authentication dependencies (:meth:`user`, :meth:`admin`), the
    audited study lookup and the cached PNG responses."""

    def __init__(self, store: JobStore, accounts: Accounts, studies: Studies):
        self.store, self.accounts, self.studies = store, accounts, studies
        self.opened = _RecentOpens()

    def credentials(self, request: Request) -> User | None:
        """The user of the request's API token (``Authorization: Bearer``) or session cookie."""
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            return self.accounts.token_user(header[7:].strip())
        session_id = request.cookies.get(COOKIE)
        return self.accounts.session_user(session_id) if session_id else None

    def user(self, request: Request) -> User:
        """The logged-in user (dependency); 401 without valid credentials."""
        found = self.credentials(request)
        if found is None:
            raise HTTPException(401, "authentication required: log in or send an API token",
                                headers={"WWW-Authenticate": "Bearer"})
        return found

    def admin(self, request: Request) -> User:
        """The logged-in admin (dependency); 401 without valid credentials, 403 for a viewer."""
        current = self.user(request)
        if not current.is_admin:
            raise HTTPException(403, "this needs the admin role")
        return current

    def study_for(self, study_id: str, request: Request, current: User) -> Study:
        """The study (404 when there is none), its opening by ``current`` audited."""
        study = self.studies.get(study_id)
        if study is None:
            raise HTTPException(404, "no such study")
        if self.opened.first_in_a_while(current.username, study_id):
            self.accounts.audit(current.username, "open_study", target=study_id, client=_client(request))
        return study

    def result_folder(self, study: Study, generation: int | None) -> tuple[ResultFolder, int]:
        """The result folder of the shown generation (or of ``generation``) and its number; 404
        when there is no such result."""
        if generation is None:
            if study.folder is None:
                raise HTTPException(404, "no result yet")
            return study.folder, study.generation
        folder = self.studies.results.folder(study.row["series_uid"], generation)
        if generation < 1 or not folder.result_json.is_file():
            raise HTTPException(404, f"no result of generation {generation}")
        return folder, generation

    def result_png(self, study_id: str, request: Request, current: User, generation: int | None, what: str,
                   render: Callable[[ResultFolder], bytes]) -> Response:
        """``render(result folder)`` of the study's shown generation (or ``generation``)."""
        folder, number = self.result_folder(self.study_for(study_id, request, current), generation)
        try:  # a series sent again after retention removed it starts again at generation 1
            written = folder.result_json.stat().st_mtime_ns
        except OSError:
            raise HTTPException(404, "the result was removed") from None
        return _cached(request, f"{study_id}/{number}/{written}/{what}", generation is not None, PNG,
                       lambda: render(folder))


def _add_session_routes(app: FastAPI, shared: _Shared) -> None:
    """``/healthz``, ``/api/login``, ``/api/logout``, ``/api/me``."""
    accounts = shared.accounts

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        shared.store.ping()
        return {"status": "ok"}

    def named(username: str) -> str:
        """A user name for the log only when it is one (a password typed into the name field
        must not end up in the log)."""
        known = any(user["username"] == username for user in accounts.users())
        return f"for {username}" if known else "for an unknown user name"

    @app.post("/api/login")
    def login(body: Login, request: Request) -> JSONResponse:
        client = _client(request)
        if accounts.throttled(body.username, client):
            log.warning("login %s from %s refused: too many failed attempts", named(body.username), client)
            raise HTTPException(429, "too many failed logins: wait a few minutes")
        found = accounts.check_login(body.username, body.password)
        if found is None:
            accounts.audit(body.username, "login_failed", client=client)
            log.warning("failed login %s from %s", named(body.username), client)
            raise HTTPException(401, "wrong user name or password")
        session_id, _ = accounts.new_session(found)
        accounts.audit(found.username, "login", client=client)
        log.info("user %s logged in from %s", found.username, client)
        response = JSONResponse({"username": found.username, "role": found.role})
        response.set_cookie(COOKIE, session_id, max_age=int(SESSION_HOURS * 3600), httponly=True,
                            samesite="strict", secure=request.url.scheme == "https", path="/")
        return response

    @app.post("/api/logout")
    def logout(request: Request, current: User = Depends(shared.user)) -> JSONResponse:
        session_id = request.cookies.get(COOKIE)
        if session_id:
            accounts.end_session(session_id)
        accounts.audit(current.username, "logout", client=_client(request))
        response = JSONResponse({"username": current.username, "logged_out": True})
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @app.get("/api/me")
    def me(current: User = Depends(shared.user)) -> dict:
        return {"username": current.username, "role": current.role}


def _add_study_routes(app: FastAPI, shared: _Shared) -> None:
    """``/api/studies``, ``/api/studies/{id}`` and the study's pictures."""

    @app.get("/api/studies")
    def study_list(current: User = Depends(shared.user)) -> dict:
        return {"studies": [study.summary() for study in shared.studies.all()]}

    @app.get("/api/studies/{study_id}")
    def study_detail(study_id: str, request: Request, current: User = Depends(shared.user)) -> dict:
        return shared.study_for(study_id, request, current).detail()

    @app.get("/api/studies/{study_id}/maps/{name}/colorbar.png", response_class=Response)
    def colorbar(study_id: str, name: str, request: Request, current: User = Depends(shared.user)) -> Response:
        shared.study_for(study_id, request, current)
        _known(name, MAP_NAMES, "map")
        return _cached(request, f"colorbar/{name}/{__version__}", False, PNG, lambda: slices.colorbar_png(name))

    @app.get("/api/studies/{study_id}/{layer}/{name}/{z}.png", response_class=Response)
    def slice_picture(study_id: str, layer: str, name: str, z: str, request: Request,
                      generation: int | None = None, current: User = Depends(shared.user)) -> Response:
        """Slice ``z`` of map ``name`` (layer ``maps``: cbf, cbv, mtt, tmax) or of mask ``name``
        (layer ``overlays``: core, hypoperfusion) on the acquisition grid."""
        if layer not in SLICE_LAYERS or not (z.isascii() and z.isdigit()):
            raise HTTPException(404, "no such slice picture")
        names, render = SLICE_LAYERS[layer]
        _known(name, names, layer[:-1])
        return shared.result_png(study_id, request, current, generation, f"{layer}/{name}/{int(z)}",
                                 lambda folder: render(folder, name, int(z)))

    @app.get("/api/studies/{study_id}/summary.png", response_class=Response)
    def summary_picture(study_id: str, request: Request, generation: int | None = None,
                        current: User = Depends(shared.user)) -> Response:
        return shared.result_png(study_id, request, current, generation, "summary",
                                 lambda folder: folder.summary_png.read_bytes())

    @app.get("/api/studies/{study_id}/images/{name}.png", response_class=Response)
    def result_picture(study_id: str, name: str, request: Request, generation: int | None = None,
                       current: User = Depends(shared.user)) -> Response:
        if not IMAGE_NAME.fullmatch(name):
            raise HTTPException(404, "no such picture")
        return shared.result_png(study_id, request, current, generation, f"image/{name}",
                                 lambda folder: folder.image(name).read_bytes())


def _add_admin_routes(app: FastAPI, shared: _Shared, reprocess: Callable[[str, dict], int | None]) -> None:
    """``/api/studies/{id}/reprocess`` and ``/api/audit`` (admin)."""
    accounts = shared.accounts

    @app.post("/api/studies/{study_id}/reprocess", status_code=202)
    def reprocess_study(study_id: str, body: Reprocess, request: Request,
                        current: User = Depends(shared.admin)) -> dict:
        study = shared.study_for(study_id, request, current)
        if study.status in ("receiving", "incomplete", "ignored"):
            raise HTTPException(409, f"the series is {study.status}: only a complete perfusion series "
                                     "can be analysed again")
        options: dict = {}
        if body.aif is not None:
            _check_aif(body.aif, shared.studies, study)
            options["aif"] = body.aif
        if body.profile is not None:
            if body.profile not in available_profiles():
                raise HTTPException(422, f"unknown profile {body.profile!r}; available: "
                                         f"{', '.join(available_profiles())}")
            options["profile"] = body.profile
        generation = reprocess(study.row["series_uid"], options)
        if generation is None:
            raise HTTPException(409, "the series cannot be analysed again now (images arriving?)")
        accounts.audit(current.username, "reprocess", target=study_id, client=_client(request),
                       detail=json.dumps({"generation": generation, **options}, sort_keys=True))
        log.info("user %s requested re-analysis of study %s as generation %d (%s)", current.username,
                 study_id, generation, json.dumps(options, sort_keys=True) if options else "same options")
        return {"generation": generation}

    @app.get("/api/audit")
    def audit(limit: int = 500, action: str | None = None, current: User = Depends(shared.admin)) -> dict:
        return {"entries": accounts.audit_log(min(max(limit, 1), 10000), action)}


def _add_monitoring_routes(app: FastAPI, shared: _Shared) -> None:
    """``/metrics``, ``/openapi.json`` and ``/docs``."""

    @app.get("/metrics", response_class=Response)
    def prometheus(current: User = Depends(shared.user)) -> Response:
        return Response(metrics.exposition(shared.store), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(current: User = Depends(shared.user)) -> dict:
        return app.openapi()

    @app.get("/docs", include_in_schema=False)
    def docs(current: User = Depends(shared.user)) -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="stroke-triage API",
                                   swagger_js_url=f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS_URL}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS_URL}/favicon.png")


def _add_page_routes(app: FastAPI, shared: _Shared) -> None:
    """The viewer's pages ``/login``, ``/`` and ``/studies/{id}``."""

    @app.get("/login", include_in_schema=False)
    def login_page() -> Response:
        return _page("login.html")

    def page_or_login(name: str, request: Request) -> Response:
        """The page, or the login page that comes back to it (an alert's link to a study)."""
        if shared.credentials(request):
            return _page(name)
        return RedirectResponse(f"/login?next={quote(request.url.path, safe='')}", 303)

    @app.get("/", include_in_schema=False)
    def index_page(request: Request) -> Response:
        return page_or_login("index.html", request)

    @app.get("/studies/{study_id}", include_in_schema=False)
    def study_page(study_id: str, request: Request) -> Response:
        return page_or_login("study.html", request)


def _cached(request: Request, tag: str, pinned: bool, media_type: str, body: Callable[[], bytes]) -> Response:
    """``body()`` with ETag ``tag``, cached for a day when ``pinned`` (else revalidated); 304
    when the client has it, 404 when it cannot be made (a file missing, a slice out of range)."""
    headers = {"ETag": f'"{tag}"', "Cache-Control": PINNED if pinned else REVALIDATE}
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    try:
        content = body()
    except (OSError, IndexError) as exc:
        raise HTTPException(404, str(exc)) from None
    return Response(content, media_type=media_type, headers=headers)


def _page(name: str) -> Response:
    try:
        content = pages.render(name)
    except OSError:
        raise HTTPException(404, f"page {name} is not installed") from None
    return Response(content, media_type="text/html; charset=utf-8", headers={"Cache-Control": REVALIDATE})


def _known(name: str, names: tuple[str, ...], kind: str) -> None:
    if name not in names:
        raise HTTPException(404, f"no {kind} {name!r} ({kind}s: {', '.join(names)})")


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _check_aif(aif: list[int], studies: Studies, study: Study) -> None:
    """422 unless ``aif`` (x, y, z) lies in the acquisition matrix (the series' DICOM Columns
    and Rows) and its slice positions."""
    unreadable = HTTPException(409, "the series' images cannot be read to check the AIF location")
    path = studies.instance_path(study)
    if path is None:
        raise unreadable
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Rows", "Columns"])
        columns, rows, slices_ = int(header.Columns), int(header.Rows), int(study.row["n_positions"])
    except (OSError, TypeError, ValueError, AttributeError, pydicom.errors.InvalidDicomError):
        raise unreadable from None
    x, y, z = aif
    if not (0 <= x < columns and 0 <= y < rows and 0 <= z < slices_):
        raise HTTPException(422, f"aif {x},{y},{z} is outside the images ({columns} columns x {rows} rows "
                                 f"x {slices_} slices; 0-based)")


class _RecentOpens:
    """Which (user, study) pairs were audited in the last ``AUDIT_REPEAT_S`` (in memory: after a
    restart each pair is written once more)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], float] = {}

    def first_in_a_while(self, username: str, study_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get((username, study_id), -AUDIT_REPEAT_S) < AUDIT_REPEAT_S:
                return False
            self._last = {k: t for k, t in self._last.items() if now - t < AUDIT_REPEAT_S}
            self._last[(username, study_id)] = now
            return True
