"""The login page at `/auth/authorize`: a demo user picks a practitioner or a citizen.

GET validates the authorization request (`akson.idp.authorize`) and shows the page (Norwegian
bokmål, Jinja2 with autoescape, no JavaScript). The forms POST back to the same URL with the
pending request's id and a CSRF token (`akson.idp.csrf`):

- `step=hpr` — a practitioner's HPR number; the next page lists where they work (from their
  PractitionerRoles) and asks for the purpose of use, a reason (required for BTG and for a
  self-declared care relationship) and, for SMART `launch/patient`, the patient;
- `step=practitioner` — completes the practitioner login with a tillitsrammeverk attestation;
- `step=citizen` — a citizen's national id, accepted only when a Patient has it;
- `step=cancel` — back to the client with `error=access_denied`.

A completed login starts a login session (cookie) and redirects (303) to the client with
`code`, `state` and `iss` (RFC 9207). National ids typed into the page are never logged and
never shown back.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from akson.idp import attestation
from akson.idp.authorize import PageError, RedirectError, validate
from akson.idp.codes import AuthorizationRequest
from akson.idp.csrf import COOKIE as CSRF_COOKIE
from akson.idp.directory import PractitionerEntry, find_citizen, find_practitioner
from akson.idp.identity import Identity
from akson.idp.sessions import COOKIE as SESSION_COOKIE
from akson.idp.state import ProviderState
from akson.idp.urls import Urls, with_query

log = logging.getLogger("akson.idp")

_TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                         autoescape=select_autoescape(default=True, default_for_string=True))
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # No script at all; form-action is left open: the login redirects to the client's origin.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "frame-ancestors 'none'; base-uri 'none'",
}
MAX_FORM_FIELD = 1000


def render(mode: str, *, status: int = 200, title: str = "Logg inn", **context: Any) -> HTMLResponse:
    html = _TEMPLATES.get_template("login.html").render(mode=mode, title=title, **context)
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def error_page(message: str, status: int = 400) -> HTMLResponse:
    return render("error", status=status, title="Innloggingen kan ikke fortsette", error=message)


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


class LoginPage:
    """GET and POST of `/auth/authorize`."""

    def __init__(self, state: ProviderState) -> None:
        self.state = state

    async def get(self, request: Request) -> Response:
        urls = self.state.urls(request)
        keys = [k for k, _ in request.query_params.multi_items()]
        if len(keys) != len(set(keys)):  # RFC 6749 §3.1: no parameter more than once
            return error_page("En parameter er oppgitt mer enn én gang.")
        try:
            auth = validate(self.state, urls, dict(request.query_params))
        except PageError as exc:
            return error_page(exc.message)
        except RedirectError as exc:
            return _redirect(with_query(exc.redirect_uri, {
                "error": exc.error, "error_description": exc.description, "state": exc.state,
                "iss": urls.issuer}))
        self.state.codes.hold(auth)
        cookie = request.cookies.get(CSRF_COOKIE) or self.state.csrf.new_cookie()
        response = self._page(urls, auth, cookie, "start")
        response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="lax", path="/auth",
                            secure=_secure(request))
        return response

    def _page(self, urls: Urls, auth: AuthorizationRequest, cookie: str, mode: str, *,
              status: int = 200, **context: Any) -> HTMLResponse:
        client = self.state.clients.get(auth.client_id)
        title = "Velg arbeidssted og formål" if mode == "practitioner" else "Logg inn"
        context.setdefault("values", {})
        return render(mode, status=status, title=title, action=urls.authorize,
                      client_name=client.name if client else auth.client_id,
                      request_id=auth.request_id, csrf=self.state.csrf.token(cookie,
                                                                              auth.request_id),
                      purposes=attestation.PURPOSES, wants_patient=auth.wants_launch_patient,
                      **context)

    async def post(self, request: Request) -> Response:
        urls = self.state.urls(request)
        form = await request.form()
        fields = {k: v.strip() for k, v in form.items() if isinstance(v, str)}
        if any(len(v) > MAX_FORM_FIELD for v in fields.values()):
            return error_page("Skjemaet inneholder for lange verdier.")
        request_id = fields.get("request_id", "")
        auth = self.state.codes.pending(request_id)
        if auth is None:
            return error_page("Innloggingen er utløpt eller allerede fullført. Start på nytt fra "
                              "tjenesten du kom fra.")
        cookie = request.cookies.get(CSRF_COOKIE)
        if not self.state.csrf.valid(cookie, request_id, fields.get("csrf")):
            return error_page("Skjemaet kunne ikke bekreftes (CSRF). Last inn siden på nytt.",
                              status=403)
        assert cookie is not None
        step = fields.get("step")
        if step == "cancel":
            self.state.codes.discard(request_id)
            return _redirect(with_query(auth.redirect_uri, {
                "error": "access_denied", "error_description": "the user cancelled the login",
                "state": auth.state, "iss": urls.issuer}))
        if step == "hpr":
            return await self._hpr(urls, auth, cookie, fields)
        if step == "practitioner":
            return await self._practitioner(request, urls, auth, cookie, fields)
        if step == "citizen":
            return await self._citizen(request, urls, auth, cookie, fields)
        return error_page("Ukjent steg i innloggingen.")

    async def _lookup(self, hpr: str) -> PractitionerEntry | None:
        return await find_practitioner(self.state.store(), hpr)

    async def _hpr(self, urls: Urls, auth: AuthorizationRequest, cookie: str,
                   fields: dict[str, str]) -> Response:
        hpr = fields.get("hpr", "")
        entry = await self._lookup(hpr)
        problem = self._practitioner_problem(entry)
        if problem:
            return self._page(urls, auth, cookie, "start", status=400, error=problem,
                              error_field="hpr", hpr=hpr if hpr.isascii() and hpr.isdigit() else "")
        return self._page(urls, auth, cookie, "practitioner", practitioner=entry)

    @staticmethod
    def _practitioner_problem(entry: PractitionerEntry | None) -> str | None:
        if entry is None:
            return "Fant ikke helsepersonell med dette HPR-nummeret."
        if not entry.pid:
            return "Helsepersonellet mangler fødselsnummer i registeret og kan ikke logge inn."
        if not entry.workplaces:
            return "Helsepersonellet har ingen registrerte arbeidsforhold (PractitionerRole)."
        return None

    async def _practitioner(self, request: Request, urls: Urls, auth: AuthorizationRequest,
                            cookie: str, fields: dict[str, str]) -> Response:
        entry = await self._lookup(fields.get("hpr", ""))
        problem = self._practitioner_problem(entry)
        if problem or entry is None or entry.pid is None:
            return self._page(urls, auth, cookie, "start", status=400, error=problem,
                              error_field="hpr")
        purpose = fields.get("purpose", "")
        reason = fields.get("reason", "")
        self_declared = fields.get("self_declared") == "true"
        values = {"workplace": fields.get("workplace", ""), "purpose": purpose, "reason": reason,
                  "self_declared": self_declared}

        def again(message: str, field: str) -> Response:
            return self._page(urls, auth, cookie, "practitioner", status=400, error=message,
                              error_field=field, practitioner=entry, values=values)

        workplace = next((w for w in entry.workplaces if w.key == values["workplace"]), None)
        if workplace is None:
            return again("Velg et av arbeidsstedene i listen.", "workplace")
        if purpose not in attestation.PURPOSES:
            return again("Velg formål med tilgangen.", "purpose")
        if (purpose == "BTG" or self_declared) and not reason:
            return again("Skriv en begrunnelse: den kreves ved nødtilgang og selverklært "
                         "tjenstlig behov.", "reason")
        if len(reason) > attestation.MAX_REASON:
            return again("Begrunnelsen er for lang (høyst 500 tegn).", "reason")
        patient_nin: str | None = None
        launch_patient: str | None = None
        if auth.wants_launch_patient:
            patient_nin = fields.get("patient_nin", "")
            patient = await find_citizen(self.state.store(), patient_nin)
            if patient is None:
                return again("Fant ingen pasient med dette fødselsnummeret.", "patient_nin")
            launch_patient = patient.patient_id
        now = self.state.now()
        attested = attestation.build(
            pid=entry.pid, name=entry.name, hpr_number=entry.hpr_number,
            authorization=entry.authorization, workplace=workplace, purpose=purpose,
            reason=reason or None, self_declared=self_declared, patient_nin=patient_nin, toa=now)
        identity = Identity("practitioner", entry.pid, entry.name,
                            f"Practitioner/{entry.practitioner_id}", entry.hpr_number,
                            entry.authorization, workplace, attested, launch_patient)
        return await self._complete(request, urls, auth, identity)

    async def _citizen(self, request: Request, urls: Urls, auth: AuthorizationRequest,
                       cookie: str, fields: dict[str, str]) -> Response:
        found = await find_citizen(self.state.store(), fields.get("nin", ""))
        if found is None:
            # Neither the log nor the page repeats the number that was typed.
            log.info("citizen login refused: no such Patient")
            return self._page(urls, auth, cookie, "start", status=400, error_field="nin",
                              error="Fant ingen innbygger med dette fødselsnummeret i Akson.")
        identity = Identity("citizen", fields["nin"], found.name, f"Patient/{found.patient_id}",
                            launch_patient=found.patient_id if auth.wants_launch_patient
                            else None)
        return await self._complete(request, urls, auth, identity)

    async def _complete(self, request: Request, urls: Urls, auth: AuthorizationRequest,
                        identity: Identity) -> Response:
        session = self.state.sessions.start(identity, auth.client_id)
        issued = self.state.codes.issue(auth.request_id, identity, session.session_id,
                                        session.auth_time)
        if issued is None:
            self.state.sessions.end(session.session_id)
            return error_page("Innloggingen er allerede fullført. Start på nytt fra tjenesten.")
        _, code = issued
        log.info("login %s client=%s", identity.log_name(), auth.client_id)
        if self.state.on_login is not None:
            await self.state.on_login(identity, auth.client_id)
        response = _redirect(with_query(auth.redirect_uri, {
            "code": code, "state": auth.state, "iss": urls.issuer}))
        response.set_cookie(SESSION_COOKIE, session.session_id, httponly=True, samesite="lax",
                            path="/auth", secure=_secure(request),
                            max_age=self.state.settings.session_seconds)
        return response
