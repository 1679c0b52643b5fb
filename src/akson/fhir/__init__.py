"""Pure FHIR R4: validation, references, search parameters, patches, outcomes — no I/O."""
