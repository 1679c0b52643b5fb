"""`/results`: delivering results (`POST /results/ingest`) and the operators' inbox
(`/results/messages`: the quarantine and the manual matching queue). See akson.results.ingest.

The receipt is answered in the sender's own terms: an HL7 v2 ACK to HL7 v2, a KITH AppRec to
KITH XML, JSON otherwise (or whenever `Accept: application/json` asks for it).
"""

from __future__ import annotations

from typing import Any

import orjson

from akson.api.fhir.context import FhirContext
from akson.api.fhir.messages import FhirRequest, FhirResponse
from akson.api.fhir.router import principal_of
from akson.fhir.outcome import FhirError
from akson.results import hl7v2, receipt
from akson.results.ingest import Delivery, Ingestor, check_producer, format_of, handles
from akson.store import results_inbox as inbox

_STATUS = {inbox.STORED: 200, inbox.RESERVED: 200, inbox.RESOLVED: 200, inbox.UNMATCHED: 202,
           inbox.REJECTED: 400}


def negotiate(req: FhirRequest) -> None:
    """Each handler checks its own media types (ingestion takes XML and HL7 v2)."""


async def handle(ctx: FhirContext, req: FhirRequest, ingestor: Ingestor) -> FhirResponse:
    path, method = req.path, req.method
    principal = principal_of(req)
    if path == ["ingest"]:
        if method != "POST":
            raise FhirError(405, f"{method} is not supported on /results/ingest",
                            "not-supported")
        content_type = req.header("content-type")
        fmt = format_of(content_type, req.body) if content_type else None
        if fmt is None:
            raise FhirError(415, "Send application/xml (KITH Svarrapport), "
                            "x-application/hl7-v2+er7 (HL7 v2 ORU^R01) or application/fhir+json "
                            "(a Bundle)", "not-supported")
        delivery = await ingestor.ingest(principal, req.body, fmt)
        return answer(req, delivery, fmt)
    if path and path[0] == "messages":
        return await _messages(ctx, req, ingestor, path[1:])
    raise FhirError(404, "Not a results endpoint", "not-found")


def answer(req: FhirRequest, delivery: Delivery, fmt: str) -> FhirResponse:
    status = _STATUS.get(delivery.state, 200)
    r = delivery.receipt
    accept = (req.header("accept") or "").lower()
    if "json" in accept or fmt == "fhir":
        return FhirResponse(status, r.to_json(), {"Content-Type": "application/json"})
    if fmt == "hl7v2":
        ok = r.status != receipt.REJECTED
        text = "; ".join(e.text for e in r.errors) or None
        code = r.errors[0].code if r.errors else None
        return FhirResponse(status, hl7v2.ack(req.body, accepted=ok, error=text, code=code),
                            {"Content-Type": "x-application/hl7-v2+er7"})
    return FhirResponse(status, r.to_apprec_xml(), {"Content-Type": "application/xml"})


async def _messages(ctx: FhirContext, req: FhirRequest, ingestor: Ingestor,
                    rest: list[str]) -> FhirResponse:
    principal = principal_of(req)
    if not rest and req.method == "GET":
        state = _query(req, "state") or inbox.UNMATCHED
        if state not in inbox.STATES:
            raise FhirError(400, "state is one of " + ", ".join(inbox.STATES), "value")
        after = _query(req, "after") or "0"
        if not (after.isascii() and after.isdigit() and len(after) < 19):
            raise FhirError(400, "after is a delivery number", "value")
        async with ctx.gate.session(principal) as g:
            check_producer(g)
            # A lab sees its own deliveries; an operator (system/* scopes) every lab's.
            client = None if g.reaches_all else principal.client_id
            rows = await inbox.listing(g.bookkeeping, state, client_id=client, after=int(after))
            counts = await inbox.counts(g.bookkeeping, client_id=client)
        return FhirResponse(200, {"state": state, "counts": counts,
                                  "messages": [_row(m) for m in rows]},
                            {"Content-Type": "application/json"})
    if not rest or not (rest[0].isascii() and rest[0].isdigit() and len(rest[0]) < 19):
        raise FhirError(404, "Not a delivery", "not-found")
    pk = int(rest[0])
    if len(rest) == 1 and req.method == "GET":
        async with ctx.gate.session(principal) as g:
            check_producer(g)
            row = await inbox.get(g.bookkeeping, pk)
            if row is None or not handles(g, row):
                raise FhirError(404, f"No delivery {pk}", "not-found")
        return FhirResponse(200, {**_row(row), "receipt": orjson.loads(row.receipt)},
                            {"Content-Type": "application/json"})
    if len(rest) == 2 and req.method == "POST":
        body = _json_body(req)
        if rest[1] == "$match":
            ref, report = body.get("patient"), body.get("report")
            if not (isinstance(ref, str) and ref.startswith("Patient/")) or not (
                    report is None or isinstance(report, str)):
                raise FhirError(400, "$match takes {\"patient\": \"Patient/<id>\"} and, for a "
                                "delivery with several unidentified persons, \"report\": "
                                "\"<report key>\"", "required")
            delivery = await ingestor.reprocess(principal, pk, patient_id=ref[len("Patient/"):],
                                                report_key=report)
            return FhirResponse(_STATUS.get(delivery.state, 200), delivery.receipt.to_json(),
                                {"Content-Type": "application/json"})
        if rest[1] == "$retry":
            delivery = await ingestor.reprocess(principal, pk)
            return FhirResponse(_STATUS.get(delivery.state, 200), delivery.receipt.to_json(),
                                {"Content-Type": "application/json"})
        if rest[1] == "$discard":
            reason = body.get("reason")
            if not isinstance(reason, str) or not reason.strip():
                raise FhirError(400, "$discard takes {\"reason\": \"…\"}", "required")
            await ingestor.discard(principal, pk, reason.strip())
            return FhirResponse(200, {"delivery": pk, "state": inbox.DISCARDED},
                                {"Content-Type": "application/json"})
    raise FhirError(404, "Not a results endpoint", "not-found")


def _row(m: inbox.Message) -> dict[str, Any]:
    """A delivery as operators see it: no bytes and no personal data."""
    return {"delivery": m.pk, "received": m.received, "format": m.format, "sender": m.sender,
            "messageId": m.message_id, "state": m.state, "reason": m.reason, "detail": m.detail,
            "patient": f"Patient/{m.patient_id}" if m.patient_id else None}


def _query(req: FhirRequest, name: str) -> str | None:
    return next((v for k, v in req.query if k == name), None)


def _json_body(req: FhirRequest) -> dict[str, Any]:
    try:
        body = orjson.loads(req.body or b"{}")
    except orjson.JSONDecodeError:
        raise FhirError(400, "The body is not JSON", "structure") from None
    if not isinstance(body, dict):
        raise FhirError(400, "The body is not a JSON object", "structure")
    return body
