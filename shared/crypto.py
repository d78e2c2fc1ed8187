"""Field-by-field encryption at rest with a per-site key, and lookup keys.

Every service that keeps personal data uses this one module (config
``ENCRYPTION.MASTER_KEY``), so one key scheme and one stored format serve all.
Callers name what a value is bound to in ``field`` (e.g.
``volunteer:<id>:email``): a value copied elsewhere fails to decrypt.

- Keys: HKDF-SHA256 from the master key (config ``ENCRYPTION.MASTER_KEY``,
  at least 32 characters), one per site and purpose, so one site's key
  opens no other site's records.
- A field: AES-256-GCM, a fresh 96-bit nonce per value, the site and the
  field's name as associated data (a value moved to another field or site
  fails to decrypt). Stored as ``"v1:" + base64(nonce + ciphertext)``.
- Lookup keys: HMAC-SHA256 of a normalised value with the site's lookup key,
  so equal values can be found by an index without decrypting anything,
  and the value cannot be read back from its key.
"""
import base64
import hashlib
import hmac
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nameko.extensions import DependencyProvider

PREFIX = "v1:"
MIN_MASTER_KEY_CHARS = 32


class DecryptionFailed(Exception):
    """A value that this key cannot open (wrong site, field or key, or
    tampered): never returned as plaintext."""


class FieldCipher:
    def __init__(self, master_key):
        if not isinstance(master_key, str) or len(master_key) < MIN_MASTER_KEY_CHARS:
            raise RuntimeError(
                "ENCRYPTION.MASTER_KEY (ALONGSIDE_MASTER_KEY) must be set to a "
                f"random value of at least {MIN_MASTER_KEY_CHARS} characters "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`).")
        self._master = master_key.encode("utf-8")
        self._keys = {}

    def _key(self, site_id, purpose):
        cache_key = (site_id, purpose)
        key = self._keys.get(cache_key)
        if key is None:
            key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                       info=f"alongside:{purpose}:{site_id}".encode("utf-8"),
                       ).derive(self._master)
            self._keys[cache_key] = key
        return key

    @staticmethod
    def _aad(site_id, field):
        return f"{site_id}\x1f{field}".encode("utf-8")

    def encrypt(self, site_id, field, value):
        """Any JSON value (None stays None: absence is not secret)."""
        if value is None:
            return None
        plaintext = json.dumps(value, separators=(",", ":")).encode("utf-8")
        nonce = os.urandom(12)
        sealed = AESGCM(self._key(site_id, "field")).encrypt(
            nonce, plaintext, self._aad(site_id, field))
        return PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, site_id, field, token):
        if token is None:
            return None
        if not isinstance(token, str) or not token.startswith(PREFIX):
            raise DecryptionFailed(f"{field} is not an encrypted value")
        try:
            raw = base64.b64decode(token[len(PREFIX):], validate=True)
            plaintext = AESGCM(self._key(site_id, "field")).decrypt(
                raw[:12], raw[12:], self._aad(site_id, field))
        except (InvalidTag, ValueError) as error:
            raise DecryptionFailed(f"{field} cannot be decrypted") from error
        return json.loads(plaintext)

    def encrypt_fields(self, site_id, values, prefix=""):
        """{field: ciphertext} for a dict of plaintext values."""
        return {name: self.encrypt(site_id, prefix + name, value)
                for name, value in values.items()}

    def decrypt_fields(self, site_id, tokens, prefix=""):
        return {name: self.decrypt(site_id, prefix + name, token)
                for name, token in (tokens or {}).items()}

    def lookup_key(self, site_id, purpose, normalised_value):
        """A non-reversible, per-site key for finding equal values."""
        if normalised_value is None:
            return None
        return hmac.new(self._key(site_id, f"lookup:{purpose}"),
                        normalised_value.encode("utf-8"), hashlib.sha256).hexdigest()


class Encryption(DependencyProvider):
    """The service's :class:`FieldCipher`; the service refuses to start
    without a master key."""

    def setup(self):
        settings = self.container.config.get("ENCRYPTION", {}) or {}
        self.cipher = FieldCipher(settings.get("MASTER_KEY") or "")

    def get_dependency(self, worker_ctx):
        return self.cipher
