"""The development upstream login page: where identity's ``/authorize`` sends the user locally,
standing in for HelseID (personnel) and ID-porten (citizens).

``GET /login?request=...&return_to=...`` shows a form (HPR number or national id, and for
personnel the unit chosen at login); ``POST /login`` signs an upstream id token with the same
development keys the runner made for the upstream issuers (``stack.py _upstream_issuer``), its
``nonce`` the pending request's id, and sends the browser back to identity's callback, which
verifies it exactly as it verifies an exchanged upstream token. Development only: there is no
password, anyone may log in as anyone.

Run by the runner: ``uvicorn dev_login:app --app-dir infra/local`` with ``DEV_LOGIN_UPSTREAM``
(the upstream issuers with their private key files, JSON) and ``DEV_LOGIN_RETURN_TO`` (the one
callback URL it sends anyone back to: no open redirect).
"""

from __future__ import annotations

import html
import json
import os
import re
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from stack import mint_upstream

UPSTREAM: dict[str, Any] = json.loads(os.environ.get("DEV_LOGIN_UPSTREAM", "{}"))
RETURN_TO = os.environ.get("DEV_LOGIN_RETURN_TO", "")
REQUEST = r"^[A-Za-z0-9_-]{16,64}$"
IDENTIFIER = re.compile(r"^[0-9]{5,11}$")
UNIT = re.compile(r"^[0-9]{9}$")
NO_STORE = {"Cache-Control": "no-store"}

app = FastAPI(title="Akson development login (HelseID / ID-porten stand-in)")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Akson development login</title></head>
<body>
<h1>Development login</h1>
<p>Stands in for HelseID (personnel) and ID-porten (citizens). No password: development only.</p>
<form method="post" action="login">
<input type="hidden" name="request" value="{request}">
<label>Log in as <select name="who">
<option value="personnel">health personnel (HPR number)</option>
<option value="citizen">citizen (national id)</option>
</select></label>
<label>HPR number or national id <input name="identifier" required></label>
<label>Unit (organisation number, personnel only) <input name="unit"></label>
<button type="submit">Log in</button>
</form>
</body></html>
"""


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/login", response_class=HTMLResponse)
async def login_page(
    request: Annotated[str, Query(pattern=REQUEST)],
    return_to: Annotated[str, Query(max_length=2000)] = "",
) -> Response:
    if return_to != RETURN_TO:
        return JSONResponse({"error": "return_to is not identity's callback"}, status_code=400)
    return HTMLResponse(PAGE.format(request=html.escape(request)), headers=NO_STORE)


@app.post("/login")
async def log_in(request: Request) -> Response:
    # the form parsed here (FastAPI's Form needs python-multipart, which nothing else needs)
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), max_num_fields=8))
    request_id, who = form.get("request", ""), form.get("who", "")
    identifier, unit = form.get("identifier", ""), form.get("unit", "")
    if (
        not re.match(REQUEST, request_id)
        or who not in UPSTREAM
        or not IDENTIFIER.match(identifier)
        or (unit and not UNIT.match(unit))
    ):
        return JSONResponse({"error": "request, who, identifier or unit is not valid"}, 400)
    token = mint_upstream(
        {"upstream": UPSTREAM}, who, identifier, unit=unit or None, nonce=request_id
    )
    target = f"{RETURN_TO}?{urlencode({'request': request_id, 'id_token': token})}"
    return RedirectResponse(target, status_code=303, headers=NO_STORE)
