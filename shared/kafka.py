"""How every Signoff client reaches Kafka: the address, and who it is there.

The broker authenticates each client with SASL/SCRAM-SHA-512 (over TLS with SASL_SSL) and its
authorizer allows each principal only what shared/acl.py grants it, so a client needs its own
credentials. `KafkaAccess` holds them and gives them to the two client libraries:
`client_kwargs()` for aiokafka's producers, consumers and admin client, `security()` for
FastStream's KafkaBroker. `KafkaSettings` reads it from the environment (KAFKA_* variables),
for the services and the CLI alike.

PLAINTEXT (no authentication at all) is an explicit opt-in for a developer's laptop, logged once.
A password is a SecretStr: never in a log line, a repr or an error.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog
from aiokafka.errors import KafkaConnectionError
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings

if TYPE_CHECKING:  # faststream is imported where a broker is built, not by every CLI command
    from faststream.security import BaseSecurity

log = structlog.get_logger()

Protocol = Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"]
MAX_PASSWORD_FILE_BYTES = 4096
_warned_plaintext = False


class KafkaAccess(BaseModel):
    """The address of a Kafka cluster and the credentials of one principal on it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = Field(min_length=1, max_length=2000, pattern=r"^[^\s,]+(,[^\s,]+)*$")
    security_protocol: Protocol = "SASL_PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512"] = "SCRAM-SHA-512"
    sasl_username: str | None = Field(default=None, min_length=1, max_length=256)
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None

    @model_validator(mode="after")
    def _complete(self) -> KafkaAccess:
        if self.security_protocol == "PLAINTEXT":
            return self
        if not self.sasl_username:
            raise ValueError(f"{self.security_protocol} needs a principal: set KAFKA_SASL_USERNAME "
                             "(or KAFKA_SECURITY_PROTOCOL=PLAINTEXT on a developer's laptop)")
        if self.sasl_password is None or not self.sasl_password.get_secret_value():
            raise ValueError(f"{self.security_protocol} needs the password of {self.sasl_username!r}: "
                             "set KAFKA_SASL_PASSWORD_FILE (or KAFKA_SASL_PASSWORD)")
        if self.security_protocol == "SASL_SSL" and self.ssl_cafile is not None and not self.ssl_cafile.is_file():
            raise ValueError(f"KAFKA_SSL_CAFILE: no file {self.ssl_cafile} (the CA certificate, PEM; "
                             "`deploy/kafka/kafka.sh certs` prints where it is)")
        return self

    def as_principal(self, username: str, password: str | SecretStr) -> KafkaAccess:
        """The same cluster, reached as another principal (tests play several)."""
        secret = password if isinstance(password, SecretStr) else SecretStr(password)
        return self.model_copy(update={"sasl_username": username, "sasl_password": secret})

    def ssl_context(self) -> ssl.SSLContext | None:
        """For SASL_SSL: verifies the broker's certificate and host name against KAFKA_SSL_CAFILE
        (the system's CAs when unset)."""
        if self.security_protocol != "SASL_SSL":
            return None
        return ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
        _note_protocol(self)
        kwargs: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers,
                                  "security_protocol": self.security_protocol}
        if self.security_protocol != "PLAINTEXT":
            assert self.sasl_password is not None, "checked by _complete"
            kwargs |= {"sasl_mechanism": self.sasl_mechanism, "sasl_plain_username": self.sasl_username,
                       "sasl_plain_password": self.sasl_password.get_secret_value()}
        if self.security_protocol == "SASL_SSL":
            kwargs["ssl_context"] = self.ssl_context()
        return kwargs

    def security(self) -> BaseSecurity | None:
        """FastStream's KafkaBroker(security=...)."""
        _note_protocol(self)
        if self.security_protocol == "PLAINTEXT":
            return None
        from faststream.security import SASLScram512

        assert self.sasl_username is not None and self.sasl_password is not None, "checked by _complete"
        return SASLScram512(self.sasl_username, self.sasl_password.get_secret_value(),
                            ssl_context=self.ssl_context(), use_ssl=self.security_protocol == "SASL_SSL")

    def env(self) -> dict[str, str]:
        """The environment variables that give a child process (a service, the CLI) this access.
        Holds the password: for a subprocess' environment, never for a log."""
        out = {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers, "KAFKA_SECURITY_PROTOCOL": self.security_protocol}
        if self.sasl_username is not None and self.sasl_password is not None:
            out |= {"KAFKA_SASL_USERNAME": self.sasl_username,
                    "KAFKA_SASL_PASSWORD": self.sasl_password.get_secret_value()}
        if self.ssl_cafile is not None:
            out["KAFKA_SSL_CAFILE"] = str(self.ssl_cafile)
        return out


def unreachable(access: KafkaAccess) -> KafkaConnectionError:
    """What to raise when a client could not connect: where, as whom, and what to check (aiokafka
    says only "Unable to bootstrap", and logs an authentication failure apart)."""
    who = f" as {access.sasl_username}" if access.sasl_username else ""
    return KafkaConnectionError(
        f"cannot connect to Kafka at {access.bootstrap_servers}{who} over {access.security_protocol}: the "
        "broker is not reachable, or it refused the credentials (KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD_FILE)"
        + (" or its certificate is not signed by KAFKA_SSL_CAFILE" if access.security_protocol == "SASL_SSL" else ""))


def _note_protocol(access: KafkaAccess) -> None:
    global _warned_plaintext
    if access.security_protocol == "PLAINTEXT" and not _warned_plaintext:
        _warned_plaintext = True
        log.warning("kafka_plaintext", bootstrap_servers=access.bootstrap_servers,
                    note="KAFKA_SECURITY_PROTOCOL=PLAINTEXT: no authentication; for a developer's laptop only")


def read_password_file(path: Path) -> SecretStr:
    """A password from a file (a Docker secret, kafka.sh's <data dir>/credentials/<name>): its
    first line, bounded in size; the error names the variable and never the content."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_PASSWORD_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"KAFKA_SASL_PASSWORD_FILE: cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_PASSWORD_FILE_BYTES:
        raise ValueError(f"KAFKA_SASL_PASSWORD_FILE: {path} is larger than {MAX_PASSWORD_FILE_BYTES} bytes")
    try:
        lines = raw.decode().splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"KAFKA_SASL_PASSWORD_FILE: {path} is not UTF-8 text") from None
    password = lines[0].strip() if lines else ""
    if not password:
        raise ValueError(f"KAFKA_SASL_PASSWORD_FILE: {path} is empty")
    return SecretStr(password)


class KafkaSettings(BaseSettings):
    """The KAFKA_* variables, shared by ServiceSettings and the CLI's ClientSettings. `kafka`
    builds the access (and fails naming the variable to set) when a connection is made."""

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
        description="host:port[,host:port] of the Kafka brokers",
    )
    kafka_security_protocol: Protocol = Field(
        default="SASL_PLAINTEXT",
        validation_alias=AliasChoices("KAFKA_SECURITY_PROTOCOL", "kafka_security_protocol"),
        description="SASL_PLAINTEXT (local broker), SASL_SSL (compose, production) or PLAINTEXT "
        "(no authentication: a developer's laptop only, logged)",
    )
    kafka_sasl_username: str | None = Field(
        default=None, validation_alias=AliasChoices("KAFKA_SASL_USERNAME", "kafka_sasl_username"),
        description="The principal this process is (SCRAM-SHA-512), e.g. validator",
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("KAFKA_SASL_PASSWORD", "kafka_sasl_password"),
        description="Its password (prefer KAFKA_SASL_PASSWORD_FILE)",
    )
    kafka_sasl_password_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("KAFKA_SASL_PASSWORD_FILE", "kafka_sasl_password_file"),
        description="A file holding its password (a Docker secret, <kafka data dir>/credentials/<name>)",
    )
    kafka_ssl_cafile: Path | None = Field(
        default=None, validation_alias=AliasChoices("KAFKA_SSL_CAFILE", "kafka_ssl_cafile"),
        description="CA certificate (PEM) the broker's certificate is checked against, for SASL_SSL",
    )

    @property
    def kafka(self) -> KafkaAccess:
        """The access these settings describe; ValueError naming the variable when incomplete."""
        if self.kafka_sasl_password is not None and self.kafka_sasl_password_file is not None:
            raise ValueError("set KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE, not both")
        password = self.kafka_sasl_password
        if self.kafka_sasl_password_file is not None and self.kafka_security_protocol != "PLAINTEXT":
            password = read_password_file(self.kafka_sasl_password_file)
        try:
            return KafkaAccess(bootstrap_servers=self.kafka_bootstrap_servers,
                               security_protocol=self.kafka_security_protocol,
                               sasl_username=self.kafka_sasl_username, sasl_password=password,
                               ssl_cafile=self.kafka_ssl_cafile)
        except ValidationError as exc:  # the messages name the variable; no input (a password) echoed
            raise ValueError("; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())) from None
