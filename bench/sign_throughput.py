#!/usr/bin/env python3
"""CA batch signing: trustzone.pki's module_utils path vs bare `cryptography`, same process.

  bench/sign_throughput.py [--certs 2000] [--repeat 5] [--issuer-curve secp256r1] [--json]

Both paths get the same input: N PEM CSRs (EC P-256 keys, server profile: CN + 2 DNS + 1 IP
SAN, EKU serverAuth) from N distinct hosts, and an EC issuer (P-256 by default; the ca role's
default root is P-384, `--issuer-curve secp384r1` measures that). Both produce PEM
certificates.

  ours:  _issue.sign_requests(): per request load the CSR, the policy check
         (_signing.csr_violations: CSR self-signature, CN, SANs, CA flag, usages, key type),
         validity window, build (BasicConstraints, KeyUsage, SKI, AKI, EKU, SAN), sign,
         PEM + serial + notAfter + SHA-256 fingerprint of the result.
  bare:  load the CSR, CertificateBuilder with the same extensions, sign, PEM.
  bare-minimal: CertificateBuilder + sign only (public key already loaded), no PEM.

  ours+ledger: the same, then what plugins/modules/sign.py does around it: the exclusive
         ledger lock, open the SQLite issuance ledger (quick_check + schema), and record one
         row per certificate in one transaction (_issue.sign_batch's rows + _ledger.record).
         The ledger lives in a temporary directory and grows across rounds, as on a CA host.
         The issue's target (policy check, build, sign, ledger write) is ours+ledger / bare.
         With a checkout that has no _ledger module yet, only "ours" is measured.

Runs on one core (the process is single-threaded) and counts its CPU time, not the wall
clock; figures are the median of --repeat rounds, min and max shown. Prints certs/s (per CPU
second) and ours/bare.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import ipaddress
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _link_collection():
    """Import this checkout as ansible_collections.trustzone.pki (as tests/unit/conftest.py)."""
    top = tempfile.mkdtemp(prefix="trustzone-bench-")
    os.makedirs(os.path.join(top, "ansible_collections", "trustzone"))
    os.symlink(REPO, os.path.join(top, "ansible_collections", "trustzone", "pki"))
    atexit.register(shutil.rmtree, top, True)
    sys.path.insert(0, top)


_link_collection()

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C  # noqa: E402
from ansible_collections.trustzone.pki.plugins.module_utils import _issue as I  # noqa: E402
from ansible_collections.trustzone.pki.plugins.module_utils import _identity as ID  # noqa: E402

try:
    from ansible_collections.trustzone.pki.plugins.module_utils import _ledger  # noqa: E402
except ImportError:  # an older checkout: no issuance ledger
    _ledger = None

ZONE = "bench"
UTC = datetime.timezone.utc


def make_inputs(n, issuer_curve):
    now = datetime.datetime.now(UTC).replace(microsecond=0)
    curve = ec.SECP256R1() if issuer_curve == "secp256r1" else ec.SECP384R1()
    issuer_key = ec.generate_private_key(curve)
    issuer_cert = C.build_ca_certificate(
        issuer_key, C.zone_name_attributes(ZONE, "trustzone bench root CA", unique="00bench"),
        now - datetime.timedelta(days=1), now + datetime.timedelta(days=3650))
    requests = []
    for i in range(n):
        host = "node%d" % i
        names = {"common_name": "%s.%s.trustzone.test" % (host, ZONE),
                 "dns": [host, "%s.%s.trustzone.test" % (host, ZONE)],
                 "ip": [str(ipaddress.ip_address("10.0.0.0") + 10 + i)]}
        profile = ID.resolve_profiles([{"name": "server"}], ZONE, "/etc/trustzone/" + ZONE,
                                      names)[0]
        key = C.generate_key(profile["key"])
        csr = C.build_csr(key, profile["common_name"], profile["dns"], profile["ip"])
        requests.append({"host": host, "profile": profile, "csr": C.csr_pem(csr),
                         "reasons": ["missing_key"]})
    return now, issuer_cert, issuer_key, requests


def run_ours(requests, issuer_cert, issuer_key, now):
    issued, refused = I.sign_requests(requests, issuer_cert, issuer_key, [issuer_cert], now)
    if refused or sum(len(v) for v in issued.values()) != len(requests):
        raise SystemExit("ours: unexpected refusals: %r" % (refused,))
    return issued


def run_ours_ledger(requests, issuer_cert, issuer_key, now, ledger_dir):
    """plugins/modules/sign.py's sequence, minus reading the CA key and Ansible itself."""
    with _ledger.locked(ledger_dir):
        conn = _ledger.connect(ledger_dir)
        if hasattr(I, "sign_batch"):
            issued, refused, entries = I.sign_batch(requests, issuer_cert, issuer_key,
                                                    [issuer_cert], now, zone=ZONE)
        else:  # an older checkout: rows read back from the certificates
            issued, refused = I.sign_requests(requests, issuer_cert, issuer_key, [issuer_cert],
                                              now)
            entries = I.ledger_entries(issued, ZONE, issuer_cert)
        _ledger.record(conn, entries, now.strftime("%Y-%m-%dT%H:%M:%SZ"))
        conn.close()
    if refused or sum(len(v) for v in issued.values()) != len(requests):
        raise SystemExit("ours+ledger: unexpected refusals: %r" % (refused,))
    return issued


def _bare_builder(public_key, cn, sans, issuer_cert, issuer_key, now):
    ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trustzone"),
                                     x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ZONE),
                                     x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(issuer_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False))


def _digest(key):
    return hashes.SHA384() if key.curve.name == "secp384r1" else hashes.SHA256()


def run_bare(requests, issuer_cert, issuer_key, now):
    """Same input and output as ours, no policy: load CSR, build, sign, PEM."""
    digest = _digest(issuer_key)
    out = []
    for req in requests:
        csr = x509.load_pem_x509_csr(req["csr"].encode("ascii"))
        sans = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        cn = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        cert = _bare_builder(csr.public_key(), cn, sans, issuer_cert, issuer_key, now).sign(
            issuer_key, digest)
        out.append(cert.public_bytes(serialization.Encoding.PEM))
    return out


def prepare_minimal(requests):
    result = []
    for req in requests:
        csr = x509.load_pem_x509_csr(req["csr"].encode("ascii"))
        sans = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        cn = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        result.append((csr.public_key(), cn, sans))
    return result


def run_minimal(prepared, issuer_cert, issuer_key, now):
    digest = _digest(issuer_key)
    return [_bare_builder(pk, cn, sans, issuer_cert, issuer_key, now).sign(issuer_key, digest)
            for pk, cn, sans in prepared]


def timed(fn, *args):
    """CPU seconds of this process: on a shared, noisy machine the wall clock measures the
    neighbours; the CPU time of one single-threaded process is the cost on one core. (The
    ledger's one fsync per batch is I/O wait and not counted; it is one per batch.)"""
    t0 = time.process_time()
    fn(*args)
    return time.process_time() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--certs", type=int, default=2000, help="certificates per round")
    ap.add_argument("--repeat", type=int, default=5, help="rounds (median, min, max)")
    ap.add_argument("--issuer-curve", choices=["secp256r1", "secp384r1"], default="secp256r1")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = ap.parse_args(argv)

    import cryptography
    now, issuer_cert, issuer_key, requests = make_inputs(args.certs, args.issuer_curve)
    prepared = prepare_minimal(requests)
    # warm-up (imports, OpenSSL tables)
    run_ours(requests[:50], issuer_cert, issuer_key, now)
    run_bare(requests[:50], issuer_cert, issuer_key, now)
    ledger_dir = tempfile.mkdtemp(prefix="trustzone-bench-ledger-")
    atexit.register(shutil.rmtree, ledger_dir, True)
    paths = ["ours_ledger"] if _ledger is not None else []
    paths += ["ours", "bare", "bare_minimal"]
    rates = {k: [] for k in paths}
    for _round in range(args.repeat):  # interleaved, so drift and noise hit every path alike
        if _ledger is not None:
            rates["ours_ledger"].append(args.certs / timed(
                run_ours_ledger, requests, issuer_cert, issuer_key, now, ledger_dir))
        rates["ours"].append(args.certs / timed(run_ours, requests, issuer_cert, issuer_key, now))
        rates["bare"].append(args.certs / timed(run_bare, requests, issuer_cert, issuer_key, now))
        rates["bare_minimal"].append(
            args.certs / timed(run_minimal, prepared, issuer_cert, issuer_key, now))
    main_path = "ours_ledger" if _ledger is not None else "ours"
    ratios = [o / b for o, b in zip(rates[main_path], rates["bare"])]
    summary = {
        "certs_per_round": args.certs, "rounds": args.repeat,
        "issuer": "EC " + args.issuer_curve, "leaf": "EC secp256r1",
        "cryptography": cryptography.__version__,
        "ledger_write": ("included (ours_ledger)" if _ledger is not None else
                         "not implemented in this checkout; not measured"),
        "main_path": main_path,
        **{k: {"median": statistics.median(v), "min": min(v), "max": max(v)}
           for k, v in rates.items()},
        "ratio_ours_to_bare": {"median": statistics.median(ratios), "min": min(ratios),
                               "max": max(ratios)},
        "ratio_ours_to_bare_minimal": (statistics.median(rates[main_path])
                                       / statistics.median(rates["bare_minimal"])),
        "target": 0.5,
    }
    summary["pass"] = summary["ratio_ours_to_bare"]["median"] >= 0.5
    if args.json:
        print(json.dumps(summary))
        return 0
    print("CA batch signing, %d certs x %d rounds, issuer %s, leaves EC P-256, cryptography %s"
          % (args.certs, args.repeat, summary["issuer"], summary["cryptography"]))
    print("%-48s %9s %9s %9s" % ("path", "median/s", "min/s", "max/s"))
    labels = {"ours_ledger": "ours + ledger write (as the sign module)",
              "ours": "ours (_issue.sign_requests: policy+build+sign)",
              "bare": "bare (load CSR + CertificateBuilder + sign)",
              "bare_minimal": "bare minimal (builder + sign only)"}
    for key in paths:
        s = summary[key]
        print("%-48s %9.0f %9.0f %9.0f" % (labels[key], s["median"], s["min"], s["max"]))
    r = summary["ratio_ours_to_bare"]
    print("ratio %s/bare: %.2f (min %.2f, max %.2f); %s/bare-minimal %.2f; target >= 0.50: %s"
          % (main_path, r["median"], r["min"], r["max"], main_path,
             summary["ratio_ours_to_bare_minimal"], "PASS" if summary["pass"] else "FAIL"))
    print("ledger write: %s" % summary["ledger_write"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
