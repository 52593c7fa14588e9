"""A SMART on FHIR app against a running Akson platform: a newcomer's proof that the open
platform works.

Standalone launch with PKCE (Authlib's OAuth2 client), the user logging in at the development
login page (driven here by the app's own HTTP session, as a browser would be), then the granted
scopes and the patient's DocumentReferences through the one FHIR base.

    make up
    uv run python examples/smart_app.py --fhir-base http://127.0.0.1:<gateway>/fhir/R4 \\
        --client-id <a registered public app> --redirect-uri <its redirect URI> \\
        --national-id <the citizen logging in>

The app must be registered first (identity's ``POST /apps``, as the app registry's admin), a
public app with that redirect URI, enabled in the citizen's municipality.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

SCOPE = "launch/patient openid fhirUser offline_access patient/DocumentReference.rs"


@dataclass
class Launched:
    session: OAuth2Session
    token: dict[str, Any]
    fhir_base: str

    @property
    def scopes(self) -> list[str]:
        return str(self.token.get("scope", "")).split()

    @property
    def patient(self) -> str:
        return str(self.token["patient"])

    def documents(self) -> list[dict[str, Any]]:
        """The launch patient's DocumentReferences (every page)."""
        found: list[dict[str, Any]] = []
        url: str | None = f"{self.fhir_base}/DocumentReference?patient={self.patient}"
        while url:
            bundle = self.session.get(url, timeout=10).json()
            found += [entry["resource"] for entry in bundle.get("entry", [])]
            url = next((x["url"] for x in bundle.get("link", []) if x["relation"] == "next"), None)
        return found


def log_in(session: OAuth2Session, login_page: str, who: str, identifier: str) -> str:
    """What the user does at the upstream login page; returns where it sends them next."""
    request_id = parse_qs(urlsplit(login_page).query)["request"][0]
    page = session.get(login_page, withhold_token=True, timeout=10)
    page.raise_for_status()
    answer = session.post(
        urljoin(login_page, "login"),
        data={"request": request_id, "who": who, "identifier": identifier},
        allow_redirects=False,
        withhold_token=True,
        timeout=10,
    )
    return str(answer.headers["location"])


def launch(
    fhir_base: str,
    client_id: str,
    redirect_uri: str,
    identifier: str,
    who: str = "citizen",
    scope: str = SCOPE,
) -> Launched:
    """A standalone launch: discovery, authorisation with PKCE, login, the code for tokens."""
    session = OAuth2Session(
        client_id,
        scope=scope,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
    )
    # before a token (the browser's part), no Authorization header: withhold_token
    discovery = f"{fhir_base}/.well-known/smart-configuration"
    smart = session.get(discovery, withhold_token=True, timeout=10).json()
    verifier = generate_token(64)
    url, state = session.create_authorization_url(
        smart["authorization_endpoint"], code_verifier=verifier, aud=fhir_base
    )
    to_login = session.get(url, allow_redirects=False, withhold_token=True, timeout=10)
    back_to_identity = log_in(session, to_login.headers["location"], who, identifier)
    to_app = session.get(back_to_identity, allow_redirects=False, withhold_token=True, timeout=10)
    token = session.fetch_token(
        smart["token_endpoint"],
        authorization_response=to_app.headers["location"],
        code_verifier=verifier,
        state=state,
    )
    return Launched(session, dict(token), fhir_base)


def main(argv: list[str] | None = None) -> Launched:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fhir-base", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--redirect-uri", required=True)
    parser.add_argument("--national-id", required=True)
    args = parser.parse_args(argv)
    launched = launch(args.fhir_base, args.client_id, args.redirect_uri, args.national_id)
    print("granted scopes:", " ".join(launched.scopes))  # noqa: T201
    for document in launched.documents():
        print("DocumentReference", document["id"], document.get("date", ""))  # noqa: T201
    return launched


if __name__ == "__main__":
    main()
