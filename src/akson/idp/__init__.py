"""The built-in OpenID Connect / OAuth 2 provider under `/auth` (development and demos)."""

from akson.idp.provider import IdentityProvider
from akson.idp.urls import SMART_CONFIGURATION_PATH

__all__ = ["SMART_CONFIGURATION_PATH", "IdentityProvider"]
