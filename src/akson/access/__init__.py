"""Identity, policy and audit: who is asking, why, and what they may see (ARCHITECTURE.md)."""
