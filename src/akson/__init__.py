"""Akson: a FHIR-native shared health record for Norwegian municipalities."""

__version__ = "0.1.0"
