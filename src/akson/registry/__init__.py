"""Base-data registers (FREG, HPR, Enhetsregisteret, FLR, AR) as FHIR resources (docs/registers.md)."""
