"""The national results service over HTTP: the `/results/fhir` lookup base and `/results`
ingestion and operator endpoints (akson.results)."""
