"""FHIR R4 REST: requests routed to interactions, independent of the HTTP server."""
