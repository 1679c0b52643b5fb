"""FHIR profile conformance: HL7 Norway no-basis rules (`no_basis`) and a test-only snapshot checker."""
