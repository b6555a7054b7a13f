"""The web API and the viewer's pages (FastAPI), over a node's data directory.

Routes (all need a session cookie from ``POST /api/login`` or ``Authorization: Bearer <API
token>``, except ``GET /healthz``, the login itself, the login page, the static files the
pages and the API documentation load and a share link's ``/share/{token}...``; a page opened
without a session redirects to ``/login?next=<its path>``):

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
- Share links (:mod:`triage.web.shares`): ``POST /api/studies/{id}/shares`` (admin) ``{"hours":
  float?, "note": str?}`` → 201, the link with its ``path`` ``/share/<token>`` and ``url`` (the
  only time the token is shown); ``GET /api/studies/{id}/shares`` (admin): the study's links
  with ``state`` and ``uses``; ``DELETE /api/studies/{id}/shares/{link}`` (admin): revoked;
  ``GET /api/audit/shares`` (admin, ``?link=N``, ``?study=ID``): every use, granted or refused.
  With no login: ``GET /share/{token}`` (the study page in read-only mode),
  ``GET /share/{token}/study`` (the detail, with ``share: {"expires_at"}``) and the study's
  pictures under it as under ``/api/studies/{id}``; 404 for an unknown token, 410 for an
  expired or revoked one (an HTML page for the page, JSON otherwise). Their answers carry
  ``Cache-Control: no-store`` and ``Referrer-Policy: no-referrer``.
- ``GET /metrics``: Prometheus text (:mod:`triage.web.metrics`); ``GET /docs``: the OpenAPI
  description (``/openapi.json``) in Swagger UI (its files from the ``fastapi-offline``
  package under ``/docs-assets/``: no CDN needed).
- Pages ``/``, ``/studies/{id}``, ``/login`` (``static/index.html``, ``study.html``,
  ``login.html`` in the one layout ``static/layout.html``: :mod:`triage.web.pages`) and ``/static/``.

Every request for a study by a user is written to the audit log (``open_study``, once per user
and study within ``AUDIT_REPEAT_S``), as are logins, failed logins, logouts, re-runs and share
links made and revoked (``share_create``, ``share_revoke``); every request with a share link's
token to ``share_uses``.
Research use only.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import fastapi_offline
import pydicom
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from models.profiles import available_profiles
from triage import __version__
from triage.base.language import DEFAULT_LANGUAGE, check_language
from triage.report.folder import ResultFolder
from triage.store.jobs import JobStore
from triage.web import metrics, pages, security, slices
from triage.web.accounts import SESSION_HOURS, Accounts, User
from triage.web.shares import DEFAULT_HOURS, MAX_HOURS, MAX_NOTE_LENGTH, Grant, ShareRefused, Shares, refusal_page
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
SHARE_PREFIX = "/share/"
SHARE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
SLICE_LAYERS = {"maps": (MAP_NAMES, slices.map_png), "overlays": (OVERLAY_NAMES, slices.overlay_png)}


class Login(BaseModel):
    username: str
    password: str


class Reprocess(BaseModel):
    aif: list[int] | None = Field(default=None, min_length=3, max_length=3,
                                  description="source-image column x, row y, slice z (0-based)")
    profile: str | None = Field(default=None, description="threshold profile name")


class NewShare(BaseModel):
    hours: float = Field(default=DEFAULT_HOURS, gt=0, le=MAX_HOURS, description="how long the link lasts, hours")
    note: str | None = Field(default=None, max_length=MAX_NOTE_LENGTH, description="who the link is for")


def create_app(data_dir: Path, store: JobStore, *,
               reprocess: Callable[[str, dict], int | None] | None = None, public_url: str = "",
               language: str = DEFAULT_LANGUAGE) -> FastAPI:
    """The application over ``data_dir`` (``triage.db``, ``results/``) and its job store.

    ``reprocess(series_uid, options)`` queues a re-run and returns its generation (None when
    the series cannot be re-run now); by default :meth:`JobStore.reprocess` (the node passes
    its own, which also stops the older generation's running analysis and wakes a worker).
    ``public_url`` is the base of the share links' ``url`` (default: the request's own base URL,
    which behind a reverse proxy may not be the one the recipient can reach). ``language`` is
    that of the pages' words (``en``, ``vi``; :mod:`triage.base.language`).
    """
    data_dir = Path(data_dir)
    shared = _Shared(store, Accounts(store), Studies(store, data_dir / "results"), Shares(store),
                     public_url.rstrip("/"))
    shared.language = check_language(language)
    if reprocess is None:
        def reprocess(series_uid: str, options: dict) -> int | None:
            started = store.reprocess(series_uid, options)
            return None if started is None else started.number

    app = FastAPI(title="stroke-triage", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None, description="CT perfusion triage node (research use only).")
    _add_session_routes(app, shared)
    _add_study_routes(app, shared)
    _add_admin_routes(app, shared, reprocess)
    _add_share_routes(app, shared, public_url.rstrip("/"))
    _add_monitoring_routes(app, shared)
    _add_page_routes(app, shared)
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    app.add_middleware(security.Guard)
    return app


class _Shared:
    """What the routes share: the job store, the accounts, the studies, the share links and the
    in-memory record of recent study opens; the authentication dependencies (:meth:`user`,
    :meth:`admin`), the audited study lookups (:meth:`user_reading`, :meth:`link_reading`) and
    the cached PNG responses."""

    def __init__(self, store: JobStore, accounts: Accounts, studies: Studies, shares: Shares, public_url: str):
        self.store, self.accounts, self.studies, self.shares = store, accounts, studies, shares
        self.public_url = public_url
        self.opened = _RecentOpens()
        self.language = DEFAULT_LANGUAGE

    def credentials(self, request: Request) -> User | None:
        """The user of the request's API token (``Authorization: Bearer``) or session cookie."""
        if _bearer(request):
            return self.accounts.token_user(request.headers["authorization"][7:].strip())
        session_id = request.cookies.get(COOKIE)
        return self.accounts.session_user(session_id) if session_id else None

    def user(self, request: Request) -> User:
        """The logged-in user (dependency); 401 without valid credentials, 403 for a change
        by session cookie without the CSRF proofs (:func:`security.check_csrf`)."""
        found = self.credentials(request)
        if found is None:
            raise HTTPException(401, "authentication required: log in or send an API token",
                                headers={"WWW-Authenticate": "Bearer"})
        if not _bearer(request):
            security.check_csrf(request, request.cookies[COOKIE], self.public_url)
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

    def user_reading(self) -> Callable[..., Reading]:
        """The dependency giving the logged-in user's :class:`Reading` of the path's ``{study_id}``."""
        def reading(study_id: str, request: Request, current: User = Depends(self.user)) -> Reading:
            return Reading(self.study_for(study_id, request, current))
        return reading

    def link_reading(self, request: Request, token: str) -> Reading:
        """The :class:`Reading` a share link's ``token`` grants, its use recorded (404 or 410
        when it grants nothing)."""
        client, what = _client(request), _share_what(request, token)
        try:
            grant = self.shares.check(token, client, what)
        except ShareRefused as refused:
            raise HTTPException(refused.status, str(refused)) from None
        study = self.studies.get(grant.study_id)
        self.shares.record(grant, client, what, "read" if study else "gone")
        if study is None:
            raise HTTPException(404, str(ShareRefused("gone")))
        return Reading(study, grant)

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

    def result_png(self, study: Study, request: Request, generation: int | None, what: str,
                   render: Callable[[ResultFolder], bytes]) -> Response:
        """``render(result folder)`` of the study's shown generation (or ``generation``)."""
        folder, number = self.result_folder(study, generation)
        try:  # a series sent again after retention removed it starts again at generation 1
            written = folder.result_json.stat().st_mtime_ns
        except OSError:
            raise HTTPException(404, "the result was removed") from None
        return _cached(request, f"{study.id}/{number}/{written}/{what}", generation is not None, PNG,
                       lambda: render(folder))


@dataclass(frozen=True)
class Reading:
    """A study as one request may read it: by a logged-in user (``grant`` None) or through a
    share link (``grant``: the link's id and expiry)."""

    study: Study
    grant: Grant | None = None

    def detail(self) -> dict:
        """The study's detail; through a share link with ``share``: ``{"expires_at"}``."""
        detail = self.study.detail()
        if self.grant is not None:
            detail["share"] = {"expires_at": self.grant.expires_at}
        return detail


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
        security.check_origin(request, shared.public_url)  # no login CSRF
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
        _set_csrf_cookie(response, request, session_id)
        return response

    @app.post("/api/logout")
    def logout(request: Request, current: User = Depends(shared.user)) -> JSONResponse:
        session_id = request.cookies.get(COOKIE)
        if session_id:
            accounts.end_session(session_id)
        accounts.audit(current.username, "logout", client=_client(request))
        response = JSONResponse({"username": current.username, "logged_out": True})
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        response.delete_cookie(security.CSRF_COOKIE, path="/", samesite="strict")
        return response

    @app.get("/api/me")
    def me(current: User = Depends(shared.user)) -> dict:
        return {"username": current.username, "role": current.role}


def _add_study_routes(app: FastAPI, shared: _Shared) -> None:
    """``/api/studies``, ``/api/studies/{id}`` and the study's pictures."""

    @app.get("/api/studies")
    def study_list(current: User = Depends(shared.user)) -> dict:
        return {"studies": [study.summary() for study in shared.studies.all()]}

    _add_study_reads(app, shared, "/api/studies/{study_id}", shared.user_reading())


def _add_study_reads(app: FastAPI, shared: _Shared, prefix: str, reading: Callable[..., Reading]) -> None:
    """``GET prefix`` (the study's detail) and the study's pictures under ``prefix``, of the
    study the dependency ``reading`` gives (a logged-in user's, or a share link's)."""

    @app.get(prefix)
    def study_detail(found: Reading = Depends(reading)) -> dict:
        return found.detail()

    @app.get(prefix + "/maps/{name}/colorbar.png", response_class=Response)
    def colorbar(name: str, request: Request, found: Reading = Depends(reading)) -> Response:
        _known(name, MAP_NAMES, "map")
        return _cached(request, f"colorbar/{name}/{__version__}", False, PNG, lambda: slices.colorbar_png(name))

    @app.get(prefix + "/{layer}/{name}/{z}.png", response_class=Response)
    def slice_picture(layer: str, name: str, z: str, request: Request, generation: int | None = None,
                      found: Reading = Depends(reading)) -> Response:
        """Slice ``z`` of map ``name`` (layer ``maps``: cbf, cbv, mtt, tmax) or of mask ``name``
        (layer ``overlays``: core, hypoperfusion) on the acquisition grid."""
        if layer not in SLICE_LAYERS or not (z.isascii() and z.isdigit()):
            raise HTTPException(404, "no such slice picture")
        names, render = SLICE_LAYERS[layer]
        _known(name, names, layer[:-1])
        return shared.result_png(found.study, request, generation, f"{layer}/{name}/{int(z)}",
                                 lambda folder: render(folder, name, int(z)))

    @app.get(prefix + "/summary.png", response_class=Response)
    def summary_picture(request: Request, generation: int | None = None,
                        found: Reading = Depends(reading)) -> Response:
        return shared.result_png(found.study, request, generation, "summary",
                                 lambda folder: _inside(folder.summary_png, folder.path).read_bytes())

    @app.get(prefix + "/images/{name}.png", response_class=Response)
    def result_picture(name: str, request: Request, generation: int | None = None,
                       found: Reading = Depends(reading)) -> Response:
        if not IMAGE_NAME.fullmatch(name):
            raise HTTPException(404, "no such picture")
        return shared.result_png(found.study, request, generation, f"image/{name}",
                                 lambda folder: _inside(folder.image(name), folder.path).read_bytes())


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


def _add_share_routes(app: FastAPI, shared: _Shared, public_url: str) -> None:
    """The admins' ``/api/studies/{id}/shares`` and ``/api/audit/shares``; the share links'
    own ``/share/{token}`` (page) and ``/share/{token}/study...`` (reads), with no login."""
    shares = shared.shares

    def link_of(study_id: str, link_id: int) -> dict:
        link = shares.link(link_id, study_id)
        if link is None:
            raise HTTPException(404, f"study {study_id} has no share link {link_id}")
        return link

    @app.post("/api/studies/{study_id}/shares", status_code=201)
    def create_share(study_id: str, body: NewShare, request: Request, current: User = Depends(shared.admin)) -> dict:
        shared.study_for(study_id, request, current)
        token, link = shares.create(study_id, current.username, body.hours, body.note)
        shared.accounts.audit(current.username, "share_create", target=study_id, client=_client(request),
                              detail=json.dumps({"link": link["id"], "hours": body.hours, "note": link["note"]}))
        path = SHARE_PREFIX + token
        return {**link, "path": path, "url": (public_url or str(request.base_url).rstrip("/")) + path}

    @app.get("/api/studies/{study_id}/shares")
    def list_shares(study_id: str, request: Request, current: User = Depends(shared.admin)) -> dict:
        shared.study_for(study_id, request, current)
        return {"links": shares.links(study_id)}

    @app.delete("/api/studies/{study_id}/shares/{link_id}")
    def revoke_share(study_id: str, link_id: int, request: Request, current: User = Depends(shared.admin)) -> dict:
        link = link_of(study_id, link_id)
        if link["state"] == "revoked":
            return link
        shared.accounts.audit(current.username, "share_revoke", target=study_id, client=_client(request),
                              detail=json.dumps({"link": link_id}))
        return shares.revoke(link, current.username)

    @app.get("/api/audit/shares")
    def share_uses(limit: int = 500, link: int | None = None, study: str | None = None,
                   current: User = Depends(shared.admin)) -> dict:
        return {"uses": shares.uses(min(max(limit, 1), 10000), link, study)}

    @app.get(SHARE_PREFIX + "{token}", include_in_schema=False)
    def shared_page(token: str, request: Request) -> Response:
        try:
            shared.link_reading(request, token)
        except HTTPException as refused:
            return HTMLResponse(refusal_page(refused.detail), status_code=refused.status_code)
        return _page("study.html", shared.language)

    _add_study_reads(app, shared, SHARE_PREFIX + "{token}/study", shared.link_reading)

    @app.middleware("http")
    async def share_headers(request: Request, call_next) -> Response:
        """Nothing of a share link's requests cached, nor its URL sent on as a referrer."""
        response = await call_next(request)
        if request.url.path.startswith(SHARE_PREFIX):
            response.headers.update(SHARE_HEADERS)
        return response


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
        page = get_swagger_ui_html(openapi_url="/openapi.json", title="stroke-triage API",
                                   swagger_js_url=f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS_URL}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS_URL}/favicon.png")
        page.headers["Content-Security-Policy"] = security.docs_csp(page.body)
        return page


def _add_page_routes(app: FastAPI, shared: _Shared) -> None:
    """The viewer's pages ``/login``, ``/`` and ``/studies/{id}``."""

    @app.get("/login", include_in_schema=False)
    def login_page() -> Response:
        return _page("login.html", shared.language)

    def page_or_login(name: str, request: Request) -> Response:
        """The page, or the login page that comes back to it (an alert's link to a study)."""
        if shared.credentials(request):
            response = _page(name, shared.language)
            session_id = request.cookies.get(COOKIE)
            if session_id and not _bearer(request):  # a session from before the CSRF cookie
                _set_csrf_cookie(response, request, session_id)
            return response
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


def _set_csrf_cookie(response: Response, request: Request, session_id: str) -> None:
    """The session's CSRF token in the ``triage_csrf`` cookie, readable by the page's script."""
    response.set_cookie(security.CSRF_COOKIE, security.csrf_token(session_id), max_age=int(SESSION_HOURS * 3600),
                        httponly=False, samesite="strict", secure=request.url.scheme == "https", path="/")


def _page(name: str, language: str) -> Response:
    try:
        content = pages.render(name, language)
    except OSError:
        raise HTTPException(404, f"page {name} is not installed") from None
    return Response(content, media_type="text/html; charset=utf-8", headers={"Cache-Control": REVALIDATE})


def _known(name: str, names: tuple[str, ...], kind: str) -> None:
    if name not in names:
        raise HTTPException(404, f"no {kind} {name!r} ({kind}s: {', '.join(names)})")


def _inside(path: Path, root: Path) -> Path:
    """``path`` when it resolves (symbolic links followed) to a file under ``root``; else
    FileNotFoundError (a 404 of :func:`_cached`)."""
    if not path.resolve().is_relative_to(root.resolve()):
        raise FileNotFoundError(f"{path.name} is not in the result folder")
    return path


def _bearer(request: Request) -> bool:
    """Whether the request authenticates with an API token (``Authorization: Bearer``)."""
    return request.headers.get("authorization", "")[:7].lower() == "bearer "


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _share_what(request: Request, token: str) -> str:
    """What a share link's request reads: its path after the token (``page`` for the page
    itself) and its query; never the token."""
    rest = request.scope["path"][len(SHARE_PREFIX) + len(token):].lstrip("/") or "page"
    return f"{rest}?{request.url.query}" if request.url.query else rest


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
