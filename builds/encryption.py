"""Encryption at rest for secrets (variables, clone credentials, webhook secrets).

Fernet (AES-128-CBC + HMAC-SHA256) with the keys in BUILDSITE_ENCRYPTION_KEY; the first
key encrypts and every key decrypts, so keys can be rotated by prepending a new one."""

from functools import cache

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def encrypt(plaintext: str) -> str:
    return _fernet(tuple(settings.BUILDSITE_ENCRYPTION_KEYS)).encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    return _fernet(tuple(settings.BUILDSITE_ENCRYPTION_KEYS)).decrypt(ciphertext.encode()).decode()
