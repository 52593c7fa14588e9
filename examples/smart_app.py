"""A SMART on FHIR app against a running Akson platform: a newcomer's proof that the open
platform works.

Standalone launch with PKCE (Authlib's OAuth2 client), the user logging in at the development
login page (driven here by the app's own HTTP session, as a browser would be), then the granted
scopes and the patient's DocumentReferences through the one FHIR base; with ``--wait N`` it
then subscribes (a topic-based FHIR Subscription, rest-hook to a listener of its own on
127.0.0.1), waits for the handshake, and prints the first signed notification that arrives within
N seconds (record a document for the patient meanwhile, e.g. as the GP).

    make up
    uv run python examples/smart_app.py --fhir-base http://127.0.0.1:<gateway>/fhir/R4 \\
        --client-id <a registered public app> --redirect-uri <its redirect URI> \\
        --national-id <the citizen logging in>

The app must be registered first (identity's ``POST /apps``, as the app registry's admin), a
public app with that redirect URI, enabled in the citizen's municipality.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import queue
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

SCOPE = "launch/patient openid fhirUser offline_access patient/DocumentReference.rs"
DOCUMENTS = "https://akson.no/fhir/SubscriptionTopic/document-recorded"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
SECRET = "https://akson.no/fhir/StructureDefinition/subscription-signing-secret"
FHIR_JSON = "application/fhir+json"


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


@dataclass
class Notification:
    kind: str  # handshake, heartbeat, event-notification
    focus: list[str]  # the references the notification names (id-only: never content)
    verified: bool  # the X-Akson-Signature matched the body under the app's secret


@dataclass
class Listener:
    """The app's rest-hook endpoint: every POST it receives, with its signature checked."""

    secret: str
    server: ThreadingHTTPServer
    received: queue.Queue[Notification] = field(default_factory=queue.Queue)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/notify"

    def next(self, kind: str, timeout: float) -> Notification | None:
        """The next notification of ``kind`` within ``timeout`` seconds (others are skipped)."""
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            while not deadline.is_set():
                try:
                    notification = self.received.get(timeout=0.2)
                except queue.Empty:
                    continue
                if notification.kind == kind:
                    return notification
            return None
        finally:
            timer.cancel()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def listen(secret: str) -> Listener:
    received: queue.Queue[Notification] = queue.Queue()

    class Endpoint(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            signed = hmac.compare_digest(self.headers.get("x-akson-signature", ""), expected)
            bundle = json.loads(body)
            status = bundle["entry"][0]["resource"]
            kind = next(p["valueCode"] for p in status["parameter"] if p["name"] == "type")
            focus = [e["fullUrl"] for e in bundle["entry"][1:] if "fullUrl" in e]
            received.put(Notification(kind, focus, signed))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return Listener(secret, server, received)


def subscribe(launched: Launched, listener: Listener, topic: str = DOCUMENTS) -> str:
    """A Subscription to ``topic`` for the launch patient, to the listener; its id."""
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "The demo app is told of new documents",
        "criteria": topic,
        "_criteria": {
            "extension": [
                {
                    "url": f"{BACKPORT}/backport-filter-criteria",
                    "valueString": f"DocumentReference?patient=Patient/{launched.patient}",
                }
            ]
        },
        "extension": [{"url": SECRET, "valueString": listener.secret}],
        "channel": {
            "type": "rest-hook",
            "endpoint": listener.endpoint,
            "payload": FHIR_JSON,
            "_payload": {
                "extension": [
                    {"url": f"{BACKPORT}/backport-payload-content", "valueCode": "id-only"}
                ]
            },
        },
    }
    created = launched.session.post(
        f"{launched.fhir_base}/Subscription",
        json=body,
        headers={"content-type": FHIR_JSON},
        timeout=10,
    )
    created.raise_for_status()
    return str(created.json()["id"])


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


def main(
    argv: list[str] | None = None, on_subscribed: Callable[[Launched], None] | None = None
) -> Launched:
    """``on_subscribed``: called once the subscription is active (a test records a document
    there; a person does it by hand)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fhir-base", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--redirect-uri", required=True)
    parser.add_argument("--national-id", required=True)
    parser.add_argument("--wait", type=float, default=0.0, help="subscribe, wait N s for one")
    args = parser.parse_args(argv)
    launched = launch(args.fhir_base, args.client_id, args.redirect_uri, args.national_id)
    print("granted scopes:", " ".join(launched.scopes))  # noqa: T201
    for document in launched.documents():
        print("DocumentReference", document["id"], document.get("date", ""))  # noqa: T201
    if args.wait > 0:
        notify(launched, args.wait, on_subscribed)
    return launched


def notify(
    launched: Launched, wait: float, on_subscribed: Callable[[Launched], None] | None
) -> None:
    listener = listen(secrets.token_hex(32))
    try:
        subscription = subscribe(launched, listener)
        handshake = listener.next("handshake", timeout=30)
        if handshake is None:
            print(f"Subscription/{subscription}: no handshake within 30 s")  # noqa: T201
            return
        print(f"subscribed: Subscription/{subscription}, handshake signed: {handshake.verified}")  # noqa: T201, E501
        if on_subscribed is not None:
            on_subscribed(launched)
        print(f"waiting up to {wait:.0f} s for a document recorded for the patient")  # noqa: T201
        event = listener.next("event-notification", timeout=wait)
        if event is None:
            print("no notification")  # noqa: T201
        else:
            print("notification:", " ".join(event.focus), f"(signed: {event.verified})")  # noqa: T201
        launched.session.delete(f"{launched.fhir_base}/Subscription/{subscription}", timeout=10)
    finally:
        listener.close()


if __name__ == "__main__":
    main()
