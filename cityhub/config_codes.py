"""Chinese administrative identifiers: the unified social credit code (GB 32100-2015)."""

from __future__ import annotations

CREDIT_CODE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
"""The 31 characters a credit code may use (no I, O, Z, S, V); a character's value is its index here."""

CREDIT_CODE_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
"""Weights of positions 1-17 (3^(i-1) mod 31)."""


def credit_code_check_char(first17: str) -> str:
    """The 18th character of the credit code whose first 17 characters are `first17`."""
    if len(first17) != 17 or any(c not in CREDIT_CODE_ALPHABET for c in first17):
        raise ValueError(f"{first17!r} is not 17 characters from {CREDIT_CODE_ALPHABET}")
    total = sum(CREDIT_CODE_ALPHABET.index(c) * w for c, w in zip(first17, CREDIT_CODE_WEIGHTS, strict=True))
    return CREDIT_CODE_ALPHABET[(31 - total % 31) % 31]


def credit_code_problem(code: str) -> str | None:
    """Why `code` is not a valid credit code, or None when it is."""
    if len(code) != 18 or any(c not in CREDIT_CODE_ALPHABET for c in code):
        return "must be 18 characters of digits and upper-case letters except I, O, Z, S, V"
    expected = credit_code_check_char(code[:17])
    if code[17] != expected:
        return (
            f"has check character {code[17]!r} but its first 17 characters give {expected!r} "
            "(GB 32100-2015); the code is mistyped"
        )
    return None


def make_credit_code(body: str) -> str:
    """A full credit code from its first 17 characters, e.g. for examples and tests."""
    return body + credit_code_check_char(body)
