"""Passwords, tokens and API key secrets: the gateway's crypto, in one place.

Passwords are hashed with argon2 (slow on purpose). API key secrets are 32
random bytes, so a fast SHA-256 of them is safe to store and cheap to check
on every call. Tokens are JWTs signed with HS256 and the gateway's secret.
"""
import hashlib
import hmac
import secrets

import jwt
from eventlet import tpool
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shared.errors import Unauthorized

_hasher = PasswordHasher()
ALGORITHM = "HS256"
# Checked against when no user matches, so a wrong email costs as much as
# a wrong password and the timing tells nothing.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


# argon2 takes tens of milliseconds of CPU on purpose: in a real thread
# (tpool), so the other requests' greenthreads go on meanwhile.

def hash_password(password):
    return tpool.execute(_hasher.hash, password)


def password_matches(password_hash, password):
    try:
        return tpool.execute(_hasher.verify, password_hash or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False


def new_api_key_secret():
    return secrets.token_urlsafe(32)


def hash_secret(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(stored_hash, secret):
    return hmac.compare_digest(stored_hash, hash_secret(secret))


def sign_token(claims, signing_key):
    return jwt.encode(claims, signing_key, algorithm=ALGORITHM)


def read_token(token, signing_key):
    try:
        return jwt.decode(token, signing_key, algorithms=[ALGORITHM],
                          options={"require": ["exp", "sub", "role"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The token has expired: log in again.")
    except jwt.InvalidTokenError:
        raise Unauthorized("The token is not valid.")
