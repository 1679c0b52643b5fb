"""HTTP adapters: the FHIR REST API and the small operational endpoints."""
