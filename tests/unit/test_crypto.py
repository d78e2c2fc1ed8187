"""Field encryption and lookup keys: round trip, per-site keys, tamper."""
import pytest

from shared.crypto import DecryptionFailed, FieldCipher

KEY = "a master key of at least thirty-two characters"


def test_round_trip_of_any_json_value():
    cipher = FieldCipher(KEY)
    for value in ("Alex Parent", "", 42, True, ["a", "b"], {"x": 1}, "Zoë 💬"):
        token = cipher.encrypt("essex", "referral.name", value)
        assert token.startswith("v1:")
        if isinstance(value, str) and value:
            assert value not in token
        assert cipher.decrypt("essex", "referral.name", token) == value
    assert cipher.encrypt("essex", "referral.name", None) is None
    assert cipher.decrypt("essex", "referral.name", None) is None


def test_ciphertext_differs_per_site_and_per_write_and_opens_only_where_written():
    cipher = FieldCipher(KEY)
    essex = cipher.encrypt("essex", "referral.name", "Alex Parent")
    derby = cipher.encrypt("derby", "referral.name", "Alex Parent")
    again = cipher.encrypt("essex", "referral.name", "Alex Parent")
    assert len({essex, derby, again}) == 3
    assert "Alex" not in essex
    assert cipher._key("essex", "field") != cipher._key("derby", "field")
    with pytest.raises(DecryptionFailed):
        cipher.decrypt("derby", "referral.name", essex)      # another site's key
    with pytest.raises(DecryptionFailed):
        cipher.decrypt("essex", "referral.phone", essex)     # moved to another field
    with pytest.raises(DecryptionFailed):
        FieldCipher(KEY + "!").decrypt("essex", "referral.name", essex)


def test_tampered_or_plain_values_are_refused():
    cipher = FieldCipher(KEY)
    token = cipher.encrypt("essex", "referral.name", "Alex Parent")
    flipped = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    for bad in (flipped, "Alex Parent", "v1:not base64!", 12):
        with pytest.raises(DecryptionFailed):
            cipher.decrypt("essex", "referral.name", bad)


def test_lookup_keys_are_per_site_stable_and_not_the_value():
    cipher = FieldCipher(KEY)
    a = cipher.lookup_key("essex", "phone", "07700900123")
    assert a == cipher.lookup_key("essex", "phone", "07700900123")
    assert a != cipher.lookup_key("derby", "phone", "07700900123")
    assert a != cipher.lookup_key("essex", "dob_postcode", "07700900123")
    assert "07700900123" not in a and len(a) == 64
    assert cipher.lookup_key("essex", "phone", None) is None


@pytest.mark.parametrize("key", [None, "", "too short", "x" * 31])
def test_a_missing_or_short_master_key_is_refused(key):
    with pytest.raises(RuntimeError, match="ALONGSIDE_MASTER_KEY"):
        FieldCipher(key)
