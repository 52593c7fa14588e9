"""Operator commands: ``python -m identity.cli rotate`` publishes a new signing key now (it
starts signing after the configured lead) and forgets keys no token can need any more."""

from __future__ import annotations

import argparse
import asyncio
import sys

from akson_common.db import Database
from akson_common.settings import settings_for
from identity.keys import SigningKeys
from identity.settings import IdentitySettings


async def rotate(settings: IdentitySettings, lead: float) -> str:
    database = Database(settings.mongo_url.get_secret_value(), settings.mongo_database)
    try:
        keys = SigningKeys(database, settings.token_lifetime_seconds, settings.kek())
        kid = await keys.rotate(lead)
        await keys.prune()
        return kid
    finally:
        await database.close()


def main() -> None:
    settings = settings_for(IdentitySettings, "identity")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["rotate"])
    parser.add_argument("--lead", type=float, default=settings.key_publish_lead_seconds)
    args = parser.parse_args()
    kid = asyncio.run(rotate(settings, args.lead))
    sys.stdout.write(f"new signing key {kid}: published now, signs in {args.lead:.0f} s\n")


if __name__ == "__main__":
    main()
