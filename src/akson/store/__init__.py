"""Persistence: the resource repository over SQLite or PostgreSQL. The only layer that touches SQL."""
