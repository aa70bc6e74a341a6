"""A test SAML 2.0 identity provider: a throwaway key and certificate, signed Responses.

Usage::

    idp = SamlIdP.create()                      # new RSA key + self-signed certificate
    request_id = SamlIdP.request_id_from(location)   # the AuthnRequest ID in a redirect URL
    saml_response = idp.response(acs_url=..., audience=..., in_response_to=request_id,
                                 email="ann@acme.test")   # base64, ready to POST

The Assertion is signed (enveloped XML signature, RSA-SHA256, exclusive c14n) by
python3-saml's xmlsec binding, the same library allauth uses to verify it.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse
from xml.sax.saxutils import escape, quoteattr

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.utils import OneLogin_Saml2_Utils

EMAIL_ATTRIBUTE = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
GIVEN_NAME_ATTRIBUTE = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname"
SURNAME_ATTRIBUTE = "urn:oid:2.5.4.4"


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _new_id() -> str:
    return "_" + secrets.token_hex(20)


@dataclass
class SamlIdP:
    entity_id: str
    sso_url: str
    private_key_pem: str
    certificate_pem: str

    @classmethod
    def create(cls, entity_id: str = "https://idp.test/saml/metadata",
               sso_url: str = "https://idp.test/saml/sso") -> SamlIdP:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "HAAO test IdP")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .sign(key, hashes.SHA256())
        )
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption()).decode()
        cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        return cls(entity_id, sso_url, key_pem, cert_pem)

    @property
    def certificate_body(self) -> str:
        """The certificate as SSO admin consoles show it: base64 without PEM armour."""
        return "".join(line for line in self.certificate_pem.splitlines()
                       if "CERTIFICATE" not in line)

    @staticmethod
    def request_id_from(location: str) -> str:
        """The ID of the AuthnRequest carried by an HTTP-Redirect binding URL."""
        query = parse_qs(urlparse(location).query)
        xml = OneLogin_Saml2_Utils.decode_base64_and_inflate(query["SAMLRequest"][0])
        root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
        return str(root.get("ID"))

    def assertion(
        self, *, acs_url: str, audience: str, in_response_to: str | None, email: str,
        given_name: str = "", surname: str = "", now: datetime | None = None,
        lifetime: timedelta = timedelta(minutes=5),
    ) -> str:
        now = now or datetime.now(UTC)
        not_before, not_after = _instant(now - timedelta(minutes=1)), _instant(now + lifetime)
        irt = f" InResponseTo={quoteattr(in_response_to)}" if in_response_to else ""
        attributes = [(EMAIL_ATTRIBUTE, email)]
        if given_name:
            attributes.append((GIVEN_NAME_ATTRIBUTE, given_name))
        if surname:
            attributes.append((SURNAME_ATTRIBUTE, surname))
        attribute_xml = "".join(
            f'<saml:Attribute Name={quoteattr(name)}><saml:AttributeValue xsi:type="xs:string">'
            f"{escape(value)}</saml:AttributeValue></saml:Attribute>"
            for name, value in attributes
        )
        return (
            f'<saml:Assertion xmlns:saml="{C.NS_SAML}" xmlns:xs="http://www.w3.org/2001/XMLSchema"'
            f' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="{_new_id()}"'
            f' Version="2.0" IssueInstant="{_instant(now)}">'
            f"<saml:Issuer>{escape(self.entity_id)}</saml:Issuer>"
            f"<saml:Subject><saml:NameID Format={quoteattr(C.NAMEID_EMAIL_ADDRESS)}>"
            f"{escape(email)}</saml:NameID>"
            f'<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">'
            f'<saml:SubjectConfirmationData NotOnOrAfter="{not_after}"'
            f" Recipient={quoteattr(acs_url)}{irt}/></saml:SubjectConfirmation></saml:Subject>"
            f'<saml:Conditions NotBefore="{not_before}" NotOnOrAfter="{not_after}">'
            f"<saml:AudienceRestriction><saml:Audience>{escape(audience)}</saml:Audience>"
            f"</saml:AudienceRestriction></saml:Conditions>"
            f'<saml:AuthnStatement AuthnInstant="{_instant(now)}" SessionIndex="{_new_id()}">'
            f"<saml:AuthnContext><saml:AuthnContextClassRef>"
            f"urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
            f"</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>"
            f"<saml:AttributeStatement>{attribute_xml}</saml:AttributeStatement>"
            f"</saml:Assertion>"
        )

    def sign(self, xml: str) -> str:
        """`xml` with an enveloped signature over its root element, placed after the Issuer."""
        signed = OneLogin_Saml2_Utils.add_sign(
            xml, self.private_key_pem, self.certificate_pem,
            sign_algorithm=C.RSA_SHA256, digest_algorithm=C.SHA256,
        )
        return signed.decode() if isinstance(signed, bytes) else str(signed)

    def response_xml(
        self, *, acs_url: str, in_response_to: str | None, assertion_xml: str,
        now: datetime | None = None,
    ) -> str:
        now = now or datetime.now(UTC)
        irt = f" InResponseTo={quoteattr(in_response_to)}" if in_response_to else ""
        if assertion_xml.startswith("<?xml"):
            assertion_xml = assertion_xml.split("?>", 1)[1]
        return (
            f'<samlp:Response xmlns:samlp="{C.NS_SAMLP}" xmlns:saml="{C.NS_SAML}"'
            f' ID="{_new_id()}" Version="2.0" IssueInstant="{_instant(now)}"'
            f" Destination={quoteattr(acs_url)}{irt}>"
            f"<saml:Issuer>{escape(self.entity_id)}</saml:Issuer>"
            f'<samlp:Status><samlp:StatusCode Value="{C.STATUS_SUCCESS}"/></samlp:Status>'
            f"{assertion_xml}</samlp:Response>"
        )

    def response(
        self, *, acs_url: str, audience: str, in_response_to: str | None, email: str,
        given_name: str = "", surname: str = "", now: datetime | None = None,
        lifetime: timedelta = timedelta(minutes=5), tamper: bool = False,
    ) -> str:
        """A base64 SAMLResponse whose Assertion is signed; `tamper` edits it after signing."""
        assertion = self.sign(self.assertion(
            acs_url=acs_url, audience=audience, in_response_to=in_response_to, email=email,
            given_name=given_name, surname=surname, now=now, lifetime=lifetime,
        ))
        if tamper:
            # Same shape, another person: the digest no longer matches the signed content.
            assertion = assertion.replace(escape(email), escape("mallory@" + email.split("@")[1]))
        xml = self.response_xml(acs_url=acs_url, in_response_to=in_response_to,
                                assertion_xml=assertion, now=now)
        return base64.b64encode(xml.encode()).decode()
