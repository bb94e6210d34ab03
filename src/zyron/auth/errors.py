"""Refusals of the auth flows beyond a bad token or password."""

from __future__ import annotations

from zyron.errors import ZyronError


class AccountDisabled(ZyronError):
    """An administrator disabled the account: its tokens, logins and refreshes are refused."""

    status_code = 403
    code = "account_disabled"
    default_detail = "This account has been disabled by an administrator."
