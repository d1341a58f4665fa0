"""Transport security by default (issue 16, item 3), written as the attacks: SMTP login over a
plaintext connection, an http:// Slack API or webhook URL, an http:// deployment webhook. Each is
refused at start-up (settings) and again where the request would be made; https:// (and, with the
development setting, http:// on loopback only) still works.

The SMTP servers are real (aiosmtpd): one without TLS, one offering STARTTLS with a certificate made
here and trusted through REVIEW_NOTIFIER_SMTP_CA_FILE."""

from __future__ import annotations

import datetime as dt
import ipaddress
import smtplib
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from pydantic import ValidationError

from services.deployer.settings import DeployerSettings
from services.deployer.targets import webhook
from services.deployer.targets.base import Deps, RetryPolicy, TargetError
from services.review_notifier.channels.email import EmailChannel
from services.review_notifier.channels.email.mailer import Mailer, PlaintextLogin
from services.review_notifier.channels.slack.client import SlackClient, SlackUrlRefused
from services.review_notifier.settings import ReviewNotifierSettings
from shared import transport
from shared.sources import ArtifactSource
from signoff.devstack import free_port

EMAIL = dict(smtp_host="127.0.0.1", token_key="token-key-0123456789")


# --- shared.transport -------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "allow", "why"), [
    ("https://slack.com/api", False, None),
    ("https://hooks.slack.com/services/T/B/x", False, None),
    ("http://slack.com/api", False, "it is http://, which sends secrets and votes in clear"),
    ("http://127.0.0.1:8080/api", False, "it is http://"),
    ("http://127.0.0.1:8080/api", True, None),
    ("http://[::1]:8080/api", True, None),
    ("http://localhost:8080/api", True, None),
    ("http://10.0.0.5/api", True, "only to a loopback address"),
    ("http://slack.com.127.0.0.1.nip.io/api", True, "only to a loopback address"),
    ("ftp://slack.com/api", True, "not an https:// URL"),
    ("https:///api", False, "not an https:// URL with a host"),
])
def test_which_urls_may_carry_secrets(url, allow, why):
    found = transport.why_insecure(url, allow)
    assert found == why if why is None else why in found


def test_a_refusal_shows_scheme_and_host_only():
    with pytest.raises(transport.InsecureUrl) as info:
        transport.require_secure("http://hooks.example/services/T0/B0/s3cret-path", "webhook", False, "X_ALLOW")
    assert "http://hooks.example" in str(info.value) and "s3cret" not in str(info.value)
    assert "X_ALLOW=true" in str(info.value)


# --- Slack ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["slack_api_url", "slack_webhook_url"])
def test_an_http_slack_url_is_refused_at_start_up(field):
    with pytest.raises(ValidationError, match=f"REVIEW_NOTIFIER_{field.upper()} http://slack.example is refused: "
                                              "it is http://.*use an https:// URL"):
        ReviewNotifierSettings(**{field: "http://slack.example/api"})


def test_http_on_loopback_needs_the_development_setting_and_nothing_else_is_allowed_by_it():
    with pytest.raises(ValidationError, match="is refused: it is http://"):
        ReviewNotifierSettings(slack_api_url="http://127.0.0.1:9/api")
    assert ReviewNotifierSettings(slack_api_url="http://127.0.0.1:9/api", slack_allow_http_loopback=True)
    with pytest.raises(ValidationError, match="only to a loopback address"):
        ReviewNotifierSettings(slack_webhook_url="http://192.0.2.1/hook", slack_allow_http_loopback=True)
    assert ReviewNotifierSettings().slack_api_url == "https://slack.com/api"


async def test_the_slack_client_refuses_an_http_response_url_and_sends_nothing():
    sent: list[httpx.Request] = []
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200)))
    async with http:
        client = SlackClient(http, "https://slack.com/api", "xoxb-t", "C1")
        with pytest.raises(SlackUrlRefused, match="Slack response_url http://attacker.example is refused"):
            await client.respond("http://attacker.example/cb", {"text": "x"})
        await client.respond("https://hooks.slack.com/actions/T/1/x", {"text": "x"})
        with pytest.raises(SlackUrlRefused, match="Slack API URL"):
            SlackClient(http, "http://slack.example/api", "xoxb-t", "C1")
    assert [str(r.url) for r in sent] == ["https://hooks.slack.com/actions/T/1/x"]


# --- the deployer's webhook -------------------------------------------------------------------------

HOOK = dict(secret_env="HOOK_SECRET")


def test_an_http_webhook_url_is_a_start_up_problem(monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", "s")
    settings = DeployerSettings(webhook_secret_envs=("HOOK_SECRET",))
    [problem] = webhook.problems(webhook.Inputs(url="http://deploy.internal/hook", **HOOK), settings)
    assert problem.startswith("webhook url http://deploy.internal is refused: it is http://")
    assert "DEPLOYER_WEBHOOK_ALLOW_HTTP_LOOPBACK=true" in problem
    assert webhook.problems(webhook.Inputs(url="https://deploy.internal/hook", **HOOK), settings) == []
    loopback = DeployerSettings(webhook_secret_envs=("HOOK_SECRET",), webhook_allow_http_loopback=True)
    assert webhook.problems(webhook.Inputs(url="http://127.0.0.1:9/hook", **HOOK), loopback) == []
    assert webhook.problems(webhook.Inputs(url="http://deploy.internal/hook", **HOOK), loopback)


class NoDeliveries:
    def delivered(self, key: str) -> bool:
        return False

    def record_delivery(self, key: str) -> None:
        raise AssertionError("nothing may be recorded as delivered")


async def test_an_http_webhook_is_never_called(monkeypatch, tmp_path):
    monkeypatch.setenv("HOOK_SECRET", "s")
    settings = DeployerSettings(webhook_secret_envs=("HOOK_SECRET",), model_store=tmp_path / "store")
    deps = Deps(settings, ArtifactSource(roots=(), workdir=tmp_path), NoDeliveries(), RetryPolicy(attempts=1))
    target = webhook.build(webhook.Inputs(url="http://deploy.internal/hook", **HOOK), deps)
    called: list[object] = []
    monkeypatch.setattr(httpx.AsyncClient, "post", lambda *a, **k: called.append(a))
    with pytest.raises(TargetError, match="webhook url http://deploy.internal is refused") as info:
        await target.send({"action": "revoke"}, "key-1")
    assert not info.value.transient and called == []


# --- SMTP -------------------------------------------------------------------------------------------

def test_plaintext_smtp_login_is_refused_at_start_up():
    with pytest.raises(ValidationError, match="REVIEW_NOTIFIER_SMTP_STARTTLS=false with REVIEW_NOTIFIER_SMTP_USERNAME "
                                              "would send the SMTP password in clear"):
        ReviewNotifierSettings(**EMAIL, smtp_username="signoff", smtp_password="pw", smtp_starttls=False)


def test_credentials_mean_starttls_by_default():
    settings = ReviewNotifierSettings(**EMAIL, smtp_username="signoff", smtp_password="pw")
    assert settings.smtp_uses_starttls
    mailer = EmailChannel.from_settings(settings).mailer
    assert mailer is not None and mailer.starttls and not mailer.tls
    implicit = EmailChannel.from_settings(ReviewNotifierSettings(**EMAIL, smtp_username="u", smtp_tls=True)).mailer
    assert implicit is not None and implicit.tls and not implicit.starttls
    anonymous = ReviewNotifierSettings(**EMAIL)  # a local relay without login: nothing to protect
    assert not anonymous.smtp_uses_starttls
    plain = ReviewNotifierSettings(**EMAIL, smtp_username="u", smtp_starttls=False, smtp_allow_plaintext_login=True)
    assert not plain.smtp_encrypted  # explicitly allowed, for a local test server


def test_implicit_tls_and_starttls_exclude_each_other():
    with pytest.raises(ValidationError, match="SMTP_TLS and REVIEW_NOTIFIER_SMTP_STARTTLS are both set"):
        ReviewNotifierSettings(**EMAIL, smtp_tls=True, smtp_starttls=True)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA)."""
    from cryptography import x509  # noqa: PLC0415 - only the STARTTLS server needs it
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class Server:
    """An aiosmtpd server requiring a login; records logins and whether each came over TLS."""

    def __init__(self, tls: ssl.SSLContext | None) -> None:
        self.logins: list[tuple[str, bool]] = []
        self.messages: list[bytes] = []
        self.port = free_port()
        server = self

        class Handler:
            async def handle_DATA(self, smtp, session, envelope):  # noqa: N802 - aiosmtpd's naming
                server.messages.append(envelope.content)
                return "250 OK"

        def authenticator(smtp, session, envelope, mechanism, auth_data):
            server.logins.append((auth_data.login.decode(), session.ssl is not None))
            return AuthResult(success=auth_data.password == b"smtp-pass")

        options = dict(tls_context=tls, require_starttls=True) if tls else {}
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, authenticator=authenticator,
                                     auth_required=True, auth_require_tls=tls is not None, **options)


@pytest.fixture
def plaintext_server() -> Iterator[Server]:
    server = Server(None)
    server.controller.start()
    yield server
    server.controller.stop()


@pytest.fixture
def starttls_server(certificate) -> Iterator[Server]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    server = Server(context)
    server.controller.start()
    yield server
    server.controller.stop()


def mail() -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "signoff@example.com", "bob@example.com", "review"
    msg.set_content("hello")
    return msg


def mailer_for(server: Server, ca_file: Path | None = None, **settings: object) -> Mailer:
    configured = ReviewNotifierSettings(smtp_host="127.0.0.1", smtp_port=server.port, token_key="t" * 16,
                                        smtp_username="signoff", smtp_password="smtp-pass", smtp_ca_file=ca_file,
                                        **settings)
    mailer = EmailChannel.from_settings(configured).mailer
    assert mailer is not None
    return mailer


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # the plaintext server
async def test_credentials_are_never_sent_to_a_server_without_starttls(plaintext_server):
    with pytest.raises(smtplib.SMTPNotSupportedError, match="STARTTLS extension not supported"):
        await mailer_for(plaintext_server).send(mail())
    assert plaintext_server.logins == [] and plaintext_server.messages == []


async def test_credentials_go_over_starttls_and_the_mail_is_sent(starttls_server, certificate):
    await mailer_for(starttls_server, ca_file=certificate[0]).send(mail())
    assert starttls_server.logins == [("signoff", True)] and len(starttls_server.messages) == 1


async def test_a_server_certificate_that_is_not_trusted_is_refused(starttls_server):
    with pytest.raises(ssl.SSLCertVerificationError):
        await mailer_for(starttls_server).send(mail())  # the system's CAs do not know the test's
    assert starttls_server.logins == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_plaintext_login_only_when_explicitly_allowed(plaintext_server):
    with pytest.raises(PlaintextLogin, match="SMTP login without TLS is not allowed"):
        await Mailer("127.0.0.1", plaintext_server.port, username="signoff", password="smtp-pass").send(mail())
    assert plaintext_server.logins == []
    await mailer_for(plaintext_server, smtp_starttls=False, smtp_allow_plaintext_login=True).send(mail())
    assert plaintext_server.logins == [("signoff", False)]
