"""_truststores: the add/remove plan for Java and NSS stores, and the tool-output parsers.

The keytool and certutil samples are real output (Debian 12: OpenJDK 17.0.19, NSS 3.87),
with certificates from the test zones substituted.
"""

from __future__ import annotations

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _truststores as T
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    DAY, NAMES, NOW, make_root)

PREFIX = "trustzone-prod-"


@pytest.fixture(scope="module")
def retired(keys):
    return make_root(keys.get("p384#retired-root"), cn="trustzone prod old root",
                     unique="fedcba9876543210")


def fp(cert):
    return C.fingerprint(cert)


def keytool_sample(entries):
    """``keytool -list -rfc`` output for ``[(alias, entry_type, [cert, ...])]``."""
    out = ["Keystore type: PKCS12", "Keystore provider: SUN", "",
           "Your keystore contains %d entr%s" % (len(entries), "y" if len(entries) == 1 else "ies"),
           ""]
    for alias, kind, certs in entries:
        out += ["Alias name: %s" % alias, "Creation date: Nov 23, 2026", "Entry type: %s" % kind]
        if kind == "PrivateKeyEntry":
            out.append("Certificate chain length: %d" % len(certs))
            for index, cert in enumerate(certs, 1):
                out += ["Certificate[%d]:" % index, C.certificate_pem(cert)]
        else:
            out.append("")
            out += [C.certificate_pem(cert) for cert in certs]
        out += ["", "*******************************************",
                "*******************************************", "", ""]
    return "\n".join(out)


CERTUTIL_SAMPLE = """
Certificate Nickname                                         Trust Attributes
                                                             SSL,S/MIME,JAR/XPI

trustzone-prod-0123456789abcdef                              CT,,\x20\x20
My Company Root (2024)                                       C,C,C
server                                                       u,u,u
exp root                                                     ,,\x20\x20\x20
"""


# --------------------------------------------------------------------------- naming

def test_alias_names_are_prefix_plus_sixteen_hex(zone):
    assert T.alias_prefix("prod") == PREFIX
    assert T.alias_for(PREFIX, zone.cert) == PREFIX + fp(zone.cert)[:16]
    assert T.alias_for("debian:" + PREFIX, zone.cert, ".pem") == \
        "debian:%s%s.pem" % (PREFIX, fp(zone.cert)[:16])


@pytest.mark.parametrize("name,owned", [
    ("trustzone-prod-0123456789abcdef", True),
    ("trustzone-prod-0123456789ABCDEF", False),
    ("trustzone-prod-x-0123456789abcdef", False),   # zone prod-x, not prod
    ("trustzone-prod-0123456789abcdef0", False),
    ("trustzone-prod-", False),
    ("mykey", False),
])
def test_zone_entries_are_recognised_exactly(name, owned):
    assert T.is_zone_entry(name, PREFIX) is owned


# --------------------------------------------------------------------------- plan_store

def test_an_empty_store_gets_every_root(zone, other_zone):
    plan = T.plan_store([], [zone.cert, other_zone.cert], PREFIX)
    assert plan["add"] == {T.alias_for(PREFIX, zone.cert): zone.cert,
                           T.alias_for(PREFIX, other_zone.cert): other_zone.cert}
    assert plan["remove"] == [] and plan["keep"] == {}


def test_a_store_that_is_right_needs_nothing(zone):
    alias = T.alias_for(PREFIX, zone.cert)
    plan = T.plan_store([(alias, fp(zone.cert)), ("mykey", "ab" * 32)], [zone.cert], PREFIX)
    assert plan == {"add": {}, "remove": [], "keep": {fp(zone.cert): alias}}


def test_after_a_rotation_the_retired_root_goes_and_the_new_one_comes(zone, retired):
    old = T.alias_for(PREFIX, retired)
    plan = T.plan_store([(old, fp(retired))], [zone.cert], PREFIX)
    assert plan["remove"] == [old]
    assert list(plan["add"]) == [T.alias_for(PREFIX, zone.cert)]


def test_during_a_rotation_both_roots_stay(zone, retired):
    entries = [(T.alias_for(PREFIX, c), fp(c)) for c in (zone.cert, retired)]
    plan = T.plan_store(entries, [zone.cert, retired], PREFIX)
    assert plan["add"] == {} and plan["remove"] == []


def test_other_zones_and_foreign_entries_are_never_touched(zone, other_zone, retired):
    entries = [(T.alias_for("trustzone-lab-", other_zone.cert), fp(other_zone.cert)),
               (T.alias_for("trustzone-prod-x-", retired), fp(retired)),
               ("corporate-root", fp(retired))]
    plan = T.plan_store(entries, [zone.cert], PREFIX)
    assert plan["remove"] == []
    assert list(plan["add"]) == [T.alias_for(PREFIX, zone.cert)]


def test_a_root_present_under_a_foreign_name_is_not_added_again(zone):
    plan = T.plan_store([("My Company Root", fp(zone.cert))], [zone.cert], PREFIX)
    assert plan == {"add": {}, "remove": [], "keep": {fp(zone.cert): "My Company Root"}}


def test_keytool_style_fingerprints_are_understood(zone):
    colons = ":".join(fp(zone.cert)[i:i + 2] for i in range(0, 64, 2)).upper()
    plan = T.plan_store([("x", colons)], [zone.cert], PREFIX)
    assert plan["keep"] == {fp(zone.cert): "x"}


def test_a_tampered_zone_entry_is_replaced(zone, retired):
    alias = T.alias_for(PREFIX, zone.cert)
    plan = T.plan_store([(alias, fp(retired))], [zone.cert], PREFIX)
    assert plan["remove"] == [alias] and plan["add"] == {alias: zone.cert}


def test_an_nss_name_holding_a_current_root_is_not_removed(zone, retired):
    alias = T.alias_for(PREFIX, zone.cert)
    plan = T.plan_store([(alias, fp(retired)), (alias, fp(zone.cert))], [zone.cert], PREFIX)
    assert plan["remove"] == [] and plan["add"] == {}


def test_add_false_only_prunes(zone, retired):
    entries = [("debian:trustzone-prod-%s.pem" % fp(retired)[:16], fp(retired))]
    plan = T.plan_store(entries, [zone.cert], "debian:" + PREFIX, add=False, suffix=".pem")
    assert plan == {"add": {}, "remove": [entries[0][0]], "keep": {}}


def test_an_empty_prefix_is_refused(zone):
    with pytest.raises(TrustzoneError, match="empty entry prefix"):
        T.plan_store([], [zone.cert], "")


# --------------------------------------------------------------------------- keytool

def test_keytool_listing_is_parsed(keys, zone, other_zone):
    key = keys.get("p256#store-leaf")
    leaf = zone.leaf(key.public_key(), NAMES)
    text = keytool_sample([("other", "trustedCertEntry", [other_zone.cert]),
                           ("server", "PrivateKeyEntry", [leaf, zone.cert]),
                           (T.alias_for(PREFIX, zone.cert), "trustedCertEntry", [zone.cert])])
    listing = T.parse_keytool_list(text)
    assert [(a, k, len(p)) for a, k, p in listing] == [
        ("other", "trustedCertEntry", 1), ("server", "PrivateKeyEntry", 2),
        (T.alias_for(PREFIX, zone.cert), "trustedCertEntry", 1)]
    assert T.keytool_trusted_entries(listing) == [
        ("other", fp(other_zone.cert)), (T.alias_for(PREFIX, zone.cert), fp(zone.cert))]


def test_an_empty_keystore_listing_is_parsed():
    assert T.parse_keytool_list(keytool_sample([])) == []


def test_a_debian_cacerts_alias_with_a_colon_is_parsed(zone):
    text = "Warning: use -cacerts option to access cacerts keystore\n" + keytool_sample(
        [("debian:trustzone-prod-%s.pem" % fp(zone.cert)[:16], "trustedCertEntry",
          [zone.cert])])
    (alias, kind, pems), = T.parse_keytool_list(text)
    assert alias.startswith("debian:trustzone-prod-") and kind == "trustedCertEntry"


def test_unexpected_keytool_output_is_an_error():
    with pytest.raises(TrustzoneError, match="cannot read the keytool listing"):
        T.parse_keytool_list("keytool error: java.lang.Exception: something")


# --------------------------------------------------------------------------- NSS

def test_certutil_listing_is_parsed():
    assert T.parse_certutil_list(CERTUTIL_SAMPLE) == {
        "trustzone-prod-0123456789abcdef": "CT,,",
        "My Company Root (2024)": "C,C,C",
        "server": "u,u,u",
        "exp root": ",,",
    }
    assert T.parse_certutil_list("") == {}


@pytest.mark.parametrize("flags,canonical", [
    ("CT,,", "CT,,"), ("TC,,", "CT,,"), ("TC,c,p", "CT,c,p"), (",,", ",,"), (" C,C,C ", "C,C,C"),
    ("u,u,u", "u,u,u"),
])
def test_trust_flags_are_normalised(flags, canonical):
    assert T.normalize_trust(flags) == canonical


@pytest.mark.parametrize("flags", ["CT", "CT,,,", "X,,", "C T,,", ""])
def test_invalid_trust_flags_are_refused(flags):
    with pytest.raises(TrustzoneError, match="is not an NSS trust setting"):
        T.normalize_trust(flags)


def test_same_trust_ignores_letter_order():
    assert T.same_trust("TC,,", "CT,,")
    assert not T.same_trust("C,,", "CT,,")


# --------------------------------------------------------------------------- NSS CRLs

# crlutil -L -n NICK output (Debian 12, NSS 3.87) for a zone CRL with one revoked serial
CRLUTIL_SAMPLE = """CRL Info:
:
    Version: 2 (0x1)
    Signature Algorithm: X9.62 ECDSA signature with SHA384
    Issuer: "serialNumber=0123456789abcdef,CN=trustzone prod root CA,OU=prod,O=trustzone"
    This Update: Sat Dec 05 00:41:21 2026
    Next Update: Sat Dec 12 00:49:21 2026
    Entry 1 (0x1):
        Serial Number: 10 (0xa)
        Revocation Date: Sat Dec 05 00:44:21 2026
    CRL Extensions:
        Name: CRL Number
        Data: %s

        Name: Certificate Authority Key Identifier
        Key ID:
            22:53:2b:51:8d:63:68:76:ab:42:aa:34:21:fd:8a:14:
            fc:cc:18:5f
"""


def crl(zone, number, revoked=(), key=None):
    return C.build_crl(zone.cert, key or zone.key, [(s, NOW, "unspecified") for s in revoked],
                       NOW, NOW + 7 * DAY, number)


@pytest.mark.parametrize("data,number", [
    ("2 (0x2)", 2),
    ("1234567 (0x12d687)", 1234567),
    ("00:a1:b2:c3:d4:e5:f6:07:18:29:3a:4b:5c:6d:7e:8f:\n            90", 0xa1b2c3d4e5f60718293a4b5c6d7e8f90),
])
def test_crlutil_crl_number_is_parsed(data, number):
    assert T.parse_crlutil_crl(CRLUTIL_SAMPLE % data) == number


def test_a_crl_without_a_number_reads_as_minus_one():
    text = CRLUTIL_SAMPLE.split("    CRL Extensions:", maxsplit=1)[0]
    assert T.parse_crlutil_crl(text) == -1


def test_unexpected_crlutil_output_is_an_error():
    with pytest.raises(TrustzoneError, match="crlutil"):
        T.parse_crlutil_crl("crlutil: something else entirely")


def test_each_root_gets_the_newest_crl_it_signed(zone, other_zone, retired, keys):
    old, new, foreign = crl(zone, 3), crl(zone, 5), crl(other_zone, 9)
    # a CRL that names the zone's root as issuer but is signed by another key is not its
    forged = C.build_crl(zone.cert, other_zone.key, [(77, NOW, "unspecified")], NOW,
                         NOW + 7 * DAY, 99)
    found = T.crls_for_roots([old, forged, new, foreign], [zone.cert, retired])
    assert list(found) == [fp(zone.cert)]
    assert C.crl_number(found[fp(zone.cert)]) == 5


def test_a_database_without_crls_imports_every_wanted_one():
    assert T.plan_crls({}, {"trustzone-prod-aa": 4, "trustzone-prod-bb": 1}) == {
        "import": ["trustzone-prod-aa", "trustzone-prod-bb"], "delete": [], "keep": []}


def test_the_same_crl_again_changes_nothing():
    assert T.plan_crls({"trustzone-prod-aa": 4}, {"trustzone-prod-aa": 4}) == {
        "import": [], "delete": [], "keep": ["trustzone-prod-aa"]}


def test_a_newer_crl_replaces_the_older_one():
    # after a revocation the zone publishes a higher number: it replaces the one there
    # (NSS keeps one CRL per issuer, so an import is a replacement, never a duplicate)
    assert T.plan_crls({"trustzone-prod-aa": 4}, {"trustzone-prod-aa": 5})["import"] == [
        "trustzone-prod-aa"]


def test_an_older_crl_never_replaces_a_newer_one():
    # a stale crl.pem (say, a node restored from an old backup) must not roll revocations back
    plan = T.plan_crls({"trustzone-prod-aa": 6}, {"trustzone-prod-aa": 5})
    assert plan == {"import": [], "delete": [], "keep": ["trustzone-prod-aa"]}


def test_a_retired_roots_crl_is_deleted_and_the_new_roots_imported():
    plan = T.plan_crls({"trustzone-prod-old": 8}, {"trustzone-prod-new": 1})
    assert plan == {"import": ["trustzone-prod-new"], "delete": ["trustzone-prod-old"],
                    "keep": []}


def test_a_crl_without_a_number_is_replaced_by_a_numbered_one():
    assert T.plan_crls({"trustzone-prod-aa": -1}, {"trustzone-prod-aa": 0})["import"] == [
        "trustzone-prod-aa"]


# --------------------------------------------------------------------------- NSS intermediates

INTERMEDIATE = T.INTERMEDIATE_SUFFIX


def make_intermediate(keys, root, label, unique):
    """An intermediate CA of ``root`` (a Zone), as _rootplan.new_intermediate makes them."""
    key = keys.get("p256#" + label)
    cert = C.build_ca_certificate(
        key, C.zone_name_attributes(root.name, "trustzone %s intermediate CA" % root.name,
                                    unique=unique),
        NOW - DAY, NOW + 365 * DAY, path_length=0, issuer_cert=root.cert, issuer_key=root.key)
    return type(root)(root.name, key, cert)


@pytest.fixture(scope="module")
def inter(keys, zone):
    return make_intermediate(keys, zone, "inter-1", "1111111111111111")


@pytest.fixture(scope="module")
def inter2(keys, zone):
    """The intermediate that replaced ``inter`` (a re-issue makes a new key)."""
    return make_intermediate(keys, zone, "inter-2", "2222222222222222")


def ialias(ca):
    return T.alias_for(PREFIX, ca.cert, INTERMEDIATE)


def test_an_intermediate_nickname_is_not_a_root_nickname(zone, inter):
    # the root plan never removes an intermediate entry, the intermediate plan never a root
    assert ialias(inter) == PREFIX + fp(inter.cert)[:16] + "-intermediate"
    assert not T.is_zone_entry(ialias(inter), PREFIX)
    assert T.is_zone_entry(ialias(inter), PREFIX, INTERMEDIATE)
    entries = [(T.alias_for(PREFIX, zone.cert), fp(zone.cert)), (ialias(inter), fp(inter.cert))]
    assert T.plan_store(entries, [zone.cert], PREFIX)["remove"] == []


def test_zone_intermediates_are_the_cas_that_chain_to_a_current_root(
        keys, zone, other_zone, retired, inter, inter2):
    leaf = zone.leaf(keys.get("ec#leaf").public_key(), NAMES, issuer_cert=inter.cert,
                     issuer_key=inter.key)
    foreign = make_intermediate(keys, other_zone, "inter-lab", "3333333333333333")
    old_root = type(zone)("prod", keys.get("p384#retired-root"), retired)
    orphan = make_intermediate(keys, old_root, "inter-old", "4444444444444444")
    found = T.zone_intermediates(
        [leaf, inter.cert, zone.cert, foreign.cert, orphan.cert, inter2.cert, inter.cert],
        [zone.cert])
    # each once, sorted; not the leaf, the root, another zone's or a retired root's CA
    assert found == sorted([inter.cert, inter2.cert], key=fp)
    assert T.zone_intermediates([inter.cert], [other_zone.cert]) == []


def test_a_ca_under_an_intermediate_chains_through_it(keys, zone, inter):
    below = make_intermediate(keys, inter, "inter-below", "5555555555555555")
    assert T.zone_intermediates([below.cert], [zone.cert]) == []  # its issuer is unknown
    assert T.zone_intermediates([below.cert, inter.cert], [zone.cert]) == sorted(
        [inter.cert, below.cert], key=fp)


def test_an_intermediate_with_a_crl_is_added_untrusted_with_its_crl(zone, inter):
    crls = [crl(zone, 4), crl(inter, 2), crl(inter, 3, revoked=[77])]
    plan = T.plan_intermediates([], [inter.cert], [zone.cert], crls, PREFIX, {})
    assert plan["add"] == {ialias(inter): inter.cert}
    assert plan["remove"] == [] and plan["keep"] == {} and plan["retrust"] == []
    assert list(plan["crls"]) == [fp(inter.cert)]
    assert C.crl_number(plan["crls"][fp(inter.cert)]) == 3


def test_an_intermediate_without_a_crl_is_not_added(zone, inter):
    plan = T.plan_intermediates([], [inter.cert], [zone.cert], [crl(zone, 4)], PREFIX, {})
    assert plan["add"] == {} and plan["crls"] == {}


def test_an_intermediate_in_place_needs_nothing(zone, inter):
    entries = [(T.alias_for(PREFIX, zone.cert), fp(zone.cert)), (ialias(inter), fp(inter.cert)),
               ("mykey", "ab" * 32)]
    trust = {T.alias_for(PREFIX, zone.cert): "CT,,", ialias(inter): ",,", "mykey": "u,u,u"}
    plan = T.plan_intermediates(entries, [inter.cert], [zone.cert], [crl(inter, 3)], PREFIX,
                                trust)
    assert (plan["add"], plan["remove"], plan["retrust"]) == ({}, [], [])
    assert plan["keep"] == {fp(inter.cert): ialias(inter)}


def test_a_zone_intermediate_entry_made_a_trust_anchor_is_untrusted_again(zone, inter):
    entries = [(ialias(inter), fp(inter.cert))]
    plan = T.plan_intermediates(entries, [inter.cert], [zone.cert], [crl(inter, 3)], PREFIX,
                                {ialias(inter): "CT,C,"})
    assert plan["retrust"] == [ialias(inter)] and plan["add"] == {}


def test_an_intermediate_under_a_foreign_nickname_keeps_it_and_its_flags(zone, inter):
    entries = [("Our issuing CA", fp(inter.cert))]
    plan = T.plan_intermediates(entries, [inter.cert], [zone.cert], [crl(inter, 3)], PREFIX,
                                {"Our issuing CA": "c,,"})
    assert plan["add"] == {} and plan["keep"] == {fp(inter.cert): "Our issuing CA"}
    assert plan["retrust"] == []


def test_a_replaced_intermediate_stays_while_its_crl_is_published(zone, inter, inter2):
    # the node's chain files name only the new intermediate; the old one is in the database
    entries = [(ialias(inter), fp(inter.cert))]
    candidates = [inter2.cert, inter.cert]  # chain files + the database's own entries
    plan = T.plan_intermediates(entries, candidates, [zone.cert],
                                [crl(inter, 5), crl(inter2, 1)], PREFIX, {})
    assert plan["add"] == {ialias(inter2): inter2.cert} and plan["remove"] == []
    # ... and goes, with its CRL, once the zone publishes none for it
    plan = T.plan_intermediates(entries, candidates, [zone.cert], [crl(inter2, 2)], PREFIX, {})
    assert plan["remove"] == [ialias(inter)] and list(plan["crls"]) == [fp(inter2.cert)]


def test_an_intermediate_of_a_retired_root_goes(zone, retired, keys):
    old_root = type(zone)("prod", keys.get("p384#retired-root"), retired)
    orphan = make_intermediate(keys, old_root, "inter-old", "4444444444444444")
    entries = [(T.alias_for(PREFIX, orphan.cert, INTERMEDIATE), fp(orphan.cert))]
    plan = T.plan_intermediates(entries, [orphan.cert], [zone.cert], [crl(orphan, 9)], PREFIX,
                                {})
    assert plan["remove"] == [T.alias_for(PREFIX, orphan.cert, INTERMEDIATE)]
    assert plan["add"] == {} and plan["crls"] == {}


def test_another_zones_intermediate_entries_are_never_touched(zone, other_zone, keys):
    foreign = make_intermediate(keys, other_zone, "inter-lab", "3333333333333333")
    name = T.alias_for("trustzone-lab-", foreign.cert, INTERMEDIATE)
    plan = T.plan_intermediates([(name, fp(foreign.cert))], [foreign.cert], [zone.cert], [],
                                PREFIX, {name: "CT,,"})
    assert plan == {"add": {}, "remove": [], "keep": {}, "retrust": [], "crls": {}}
