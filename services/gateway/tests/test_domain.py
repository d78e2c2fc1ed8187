import pytest

from services.gateway import credentials, domain
from services.gateway.domain import Principal
from shared.errors import Forbidden, NotFound, Unauthorized, ValidationFailed

ADMIN = Principal("u0", "user", "national_admin", None, "Admin")
ESSEX = Principal("u1", "user", "site_coordinator", "essex", "Coordinator")
REFERRER_KEY = Principal("k1", "api_key", "referrer", "essex", "Maternity unit")


@pytest.mark.parametrize("principal, permission, allowed", [
    (ADMIN, "sites:create", True), (ESSEX, "sites:create", False),
    (ESSEX, "referrals:read", True), (ADMIN, "referrals:read", False),
    (REFERRER_KEY, "referrals:create", True), (REFERRER_KEY, "referrals:read", False),
    (ESSEX, "audit:read", True), (REFERRER_KEY, "audit:read", False),
])
def test_permissions_by_role(principal, permission, allowed):
    if allowed:
        domain.authorize(principal, permission)
    else:
        with pytest.raises(Forbidden):
            domain.authorize(principal, permission)


def test_every_role_has_at_least_one_permission_and_every_permission_a_role():
    for role in domain.ROLES:
        assert any(role in roles for roles in domain.PERMISSIONS.values())
    assert all(domain.PERMISSIONS.values())


def test_another_sites_records_are_not_found_not_forbidden():
    assert domain.visible_site(ESSEX, "essex") == "essex"
    assert domain.visible_site(ADMIN, "derby") == "derby"
    with pytest.raises(NotFound):
        domain.visible_site(ESSEX, "derby")


def test_site_scope_needs_a_site_bound_caller():
    assert domain.site_scope(ESSEX) == "essex"
    with pytest.raises(Forbidden):
        domain.site_scope(ADMIN)


def test_where_new_accounts_belong():
    assert domain.site_for_new_account(ADMIN, "site_coordinator", "derby") == "derby"
    assert domain.site_for_new_account(ADMIN, "ops", None) is None
    assert domain.site_for_new_account(ESSEX, "volunteer", None) == "essex"
    assert domain.site_for_new_account(ESSEX, "referrer", "essex") == "essex"
    with pytest.raises(ValidationFailed):
        domain.site_for_new_account(ADMIN, "volunteer", None)
    with pytest.raises(ValidationFailed):
        domain.site_for_new_account(ADMIN, "ops", "derby")
    with pytest.raises(Forbidden):
        domain.site_for_new_account(ESSEX, "volunteer", "derby")
    with pytest.raises(Forbidden):
        domain.site_for_new_account(ESSEX, "national_admin", None)


def test_api_key_format():
    key = domain.format_api_key("abc123", "s3cret-with.dots")
    assert domain.parse_api_key(key) == ("abc123", "s3cret-with.dots")
    for bad in (None, "", "abc", "alk_", "alk_id", "alk_.secret", "xyz_id.secret"):
        assert domain.parse_api_key(bad) is None


def test_rate_window():
    assert domain.rate_window(1000.0, 60) == (960, 20)
    assert domain.rate_window(1019.5, 60) == (960, 1)
    assert domain.rate_window(960.0, 60) == (960, 60)


def test_token_claims_expire_after_the_ttl():
    claims = domain.token_claims({"_id": "u1", "role": "site_coordinator",
                                  "site_id": "essex"}, 1000.7, 3600)
    assert claims == {"sub": "u1", "role": "site_coordinator", "site": "essex",
                      "iat": 1000, "exp": 4600}


def test_passwords_are_hashed_with_argon2_and_checked():
    stored = credentials.hash_password("correct horse battery")
    assert stored.startswith("$argon2") and "correct" not in stored
    assert credentials.password_matches(stored, "correct horse battery")
    assert not credentials.password_matches(stored, "wrong")
    assert not credentials.password_matches(None, "anything")
    assert not credentials.password_matches("not a hash", "anything")


def test_tokens_are_signed_and_checked():
    key = "k" * 40
    token = credentials.sign_token({"sub": "u1", "role": "ops", "exp": 4_000_000_000}, key)
    assert credentials.read_token(token, key)["sub"] == "u1"
    with pytest.raises(Unauthorized):
        credentials.read_token(token, "another key, also long enough")
    expired = credentials.sign_token({"sub": "u1", "role": "ops", "exp": 1}, key)
    with pytest.raises(Unauthorized, match="expired"):
        credentials.read_token(expired, key)
    with pytest.raises(Unauthorized):
        credentials.read_token(credentials.sign_token({"sub": "u1", "exp": 4_000_000_000}, key), key)


def test_api_key_secrets_are_stored_hashed():
    secret = credentials.new_api_key_secret()
    stored = credentials.hash_secret(secret)
    assert secret not in stored and credentials.secret_matches(stored, secret)
    assert not credentials.secret_matches(stored, secret + "x")
