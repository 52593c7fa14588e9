"""Clinical documents (FHIR R4 DocumentReference, validated with fhir.resources' R4B models)."""

from __future__ import annotations

import uuid
from typing import Any

from fhir.resources.R4B.documentreference import DocumentReference
from pydantic import ValidationError
from pymongo import IndexModel

from akson_common.db import Database
from akson_common.errors import Unprocessable

DOCUMENTS = "documents"
PATIENT_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"  # Norwegian national identity number


def parse_document(body: dict[str, Any]) -> DocumentReference:
    if body.get("resourceType") != "DocumentReference":
        raise Unprocessable("resourceType must be DocumentReference")
    try:
        return DocumentReference.model_validate(body)
    except ValidationError as error:
        # Locations only: the rejected content may be health data.
        raise Unprocessable(
            "not a valid DocumentReference",
            errors=[{"loc": [str(p) for p in e["loc"]], "msg": e["msg"]} for e in error.errors()],
        ) from None


def patient_of(document: DocumentReference) -> str:
    reference = document.subject.reference if document.subject else None
    if not reference or not reference.startswith("Patient/"):
        raise Unprocessable("subject must reference Patient/<national id>")
    return reference.removeprefix("Patient/")


def category_of(document: DocumentReference) -> str:
    for concept in document.category or []:
        for coding in concept.coding or []:
            if coding.code:
                return str(coding.code)
    return "general"


class DocumentStore:
    def __init__(self, database: Database) -> None:
        self.collection = database.collection(DOCUMENTS)
        database.declare_indexes(DOCUMENTS, [IndexModel([("patient", 1), ("category", 1)])])

    async def add(self, document: DocumentReference, *, patient: str, category: str) -> str:
        document_id = str(uuid.uuid4())
        document.id = document_id
        await self.collection.insert_one(
            {
                "_id": document_id,
                "patient": patient,
                "category": category,
                "version": 1,
                "resource": document.model_dump(mode="json", exclude_none=True),
            }
        )
        return document_id

    async def get(self, document_id: str) -> dict[str, Any] | None:
        return await self.collection.find_one({"_id": document_id})
