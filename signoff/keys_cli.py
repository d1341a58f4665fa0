"""`signoff keys`: the Ed25519 keys that sign events (shared.signing) and the trust file listing them.

    signoff keys generate deployer --role deployer --dir keys/
    signoff keys generate deployer --role deployer --dir keys/ --rotate   # a new kid beside the old

Each private key is written once, mode 600, to DIR/<name>.<kid>.pem, and DIR/<name>.pem links to
the newest (what a service's <PREFIX>SIGNING_KEY_FILE names: a rotation is a restart); its public
half is added to the trust file (DIR/trusted-keys.yaml by default), which every service and
`signoff` reads. `signoff keys init --dir DIR` makes the keys of a whole stack (each service,
one pipeline, one operator) where they are missing: the demo, `make up` and compose use it.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared import signing
from signoff import client
from signoff.settings import ClientSettings

keys_app = typer.Typer(help="Signing keys of services, pipelines and operators, and the trust file.",
                       no_args_is_help=True)

TRUST_FILE = "trusted-keys.yaml"
# The principals of a stack (`init`), and their roles.
STACK = {"validator": "validator", "policy": "policy", "review-notifier": "review-notifier",
         "deployer": "deployer", "pipeline": "pipeline", "operator": "operator"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


class KeysError(ValueError):
    """A request `generate` refuses; the message says what to do instead."""


def generate(name: str, role: str, folder: Path, trust: Path | None = None, *, owner: str | None = None,
             team: str | None = None, rotate: bool = False,
             not_after: datetime | None = None) -> tuple[signing.TrustEntry, Path, Path]:
    """Make a key for `name`: its private key file (mode 600) and its entry in the trust file.
    Returns (entry, private key path, trust file path)."""
    if not _NAME.match(name):
        raise KeysError(f"name {name!r}: 1-128 of A-Z a-z 0-9 . _ @ -, starting with a letter or digit")
    if role not in signing.ROLES:
        raise KeysError(f"role {role!r}: one of {', '.join(signing.ROLES)}")
    trust = trust or folder / TRUST_FILE
    current = signing.read_trust(trust) if trust.exists() else signing.TrustFile()
    mine = [e for e in current.keys if e.principal == name]
    if mine and not rotate:
        raise KeysError(f"{name} already has key {', '.join(e.kid for e in mine)} in {trust}; "
                        "--rotate adds another beside it")
    if rotate and not mine:
        raise KeysError(f"{name} has no key in {trust} to rotate; generate one without --rotate")
    if mine and mine[0].role != role:
        raise KeysError(f"{name} is {mine[0].role} in {trust}; a principal has one role")
    if mine:  # a rotated key keeps who answers for it unless told otherwise
        owner, team = owner or mine[-1].owner, team or mine[-1].team
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    entry = signing.new_entry(private, name, role, owner, team, not_after)
    path = folder / f"{name}.{entry.kid}.pem"
    signing.write_private(path, private)
    current.keys.append(entry)
    signing.write_trust(trust, current)
    link, tmp = folder / f"{name}.pem", folder / f".{name}.pem.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(path.name, tmp)
    os.replace(tmp, link)  # the newest key, switched at once
    return entry, path, trust


def init(folder: Path, principals: dict[str, str] = STACK) -> dict[str, Path]:
    """Keys for each of `principals` (name -> role) that has none in DIR's trust file; returns
    each one's current key file (DIR/<name>.pem)."""
    trust = folder / TRUST_FILE
    known = {e.principal for e in signing.read_trust(trust).keys} if trust.exists() else set()
    for name, role in principals.items():
        if name not in known:
            generate(name, role, folder, trust)
    return {name: folder / f"{name}.pem" for name in principals}


@keys_app.command("generate")
def generate_command(
    name: Annotated[str, typer.Argument(help="Who holds the key: a service, a pipeline, an operator")],
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(signing.ROLES)}")],
    folder: Annotated[Path, typer.Option("--dir", help="Folder of the private key (created mode 700)")],
    trust: Annotated[Path | None, typer.Option(help=f"Trust file to add the public key to [DIR/{TRUST_FILE}]")] = None,
    owner: Annotated[str | None, typer.Option(help="Who answers for the key (recorded in the trust file)")] = None,
    team: Annotated[str | None, typer.Option(help="The holder's team (recorded in the trust file)")] = None,
    rotate: Annotated[bool, typer.Option(help="Add a new key beside the principal's current one(s)")] = False,
    not_after: Annotated[str | None, typer.Option(
        help="Refuse events this key signs after this time (ISO 8601 with a time zone)")] = None,
) -> None:
    """Make an Ed25519 signing key: the private key (mode 600) and its entry in the trust file."""
    try:
        expiry = datetime.fromisoformat(not_after) if not_after is not None else None
        if expiry is not None and expiry.tzinfo is None:
            raise KeysError("--not-after needs a time zone, e.g. 2027-01-31T00:00:00+00:00")
        entry, path, trust_path = generate(name, role, folder, trust, owner=owner, team=team, rotate=rotate,
                                           not_after=expiry)
    except (KeysError, signing.KeyProblem, OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"kid {entry.kid}: {name} (role {role})")
    typer.echo(f"private key: {path} (mode 600; give it to {name} only)")
    typer.echo(f"trust file: {trust_path} (copy it to every service and signoff user)")
    if rotate:
        typer.echo(f"once {name} signs with the new key, delete its old entries from {trust_path}")


@keys_app.command("init")
def init_command(
    folder: Annotated[Path, typer.Option("--dir", help="Folder of the keys and the trust file")],
) -> None:
    """Make the keys of a stack where they are missing: the four services, `pipeline` and
    `operator` (their private keys, mode 600, and DIR/trusted-keys.yaml). Running it again changes nothing."""
    try:
        files = init(folder)
    except (KeysError, signing.KeyProblem, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for name, path in files.items():
        typer.echo(f"{name}: {path}")
    typer.echo(f"trust file: {folder / TRUST_FILE}")


# -- the keys of `signoff` itself (ClientSettings: SIGNOFF_SIGNING_KEY_FILE, SIGNOFF_TRUSTED_KEYS) --

def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def own_signer(settings: ClientSettings) -> signing.Signer | None:
    """The key this process signs with (None when neither variable is set); exit 1 when unusable."""
    if settings.signing_key_file is None and settings.signing_key is None:
        return None
    try:
        return signing.load_private(settings.signing_key_file,
                                    settings.signing_key.get_secret_value() if settings.signing_key else None,
                                    file_variable="SIGNOFF_SIGNING_KEY_FILE", env_variable="SIGNOFF_SIGNING_KEY")
    except signing.KeyProblem as exc:
        raise _fail(str(exc)) from None


def trusted(settings: ClientSettings) -> signing.Keyring | None:
    """The trust file's keyring (None when SIGNOFF_TRUSTED_KEYS is not set): what watch and history
    believe; exit 1 when the file is unusable."""
    if settings.trusted_keys is None:
        return None
    try:
        return signing.load_trust(settings.trusted_keys, accept_unsigned=(signing.SUBMITTED,))
    except signing.KeyProblem as exc:
        raise _fail(str(exc)) from None


def operator(settings: ClientSettings) -> client.Identity:
    """The operator this process signs as: SIGNOFF_SIGNING_KEY_FILE must be an operator's key listed
    in SIGNOFF_TRUSTED_KEYS. Exit 1 saying what is missing."""
    signer, keyring = own_signer(settings), trusted(settings)
    if signer is None or keyring is None:
        raise _fail("rollback and revoke are signed with your operator key: set SIGNOFF_SIGNING_KEY_FILE to "
                    "it and SIGNOFF_TRUSTED_KEYS to the trust file (`signoff keys generate NAME --role "
                    "operator` makes them)")
    try:
        return client.identity(signer, keyring, "operator")
    except client.NotTrusted as exc:
        raise _fail(str(exc)) from None


def pipeline_signer(settings: ClientSettings) -> signing.Signer | None:
    """What `submit` signs with: SIGNOFF_SIGNING_KEY_FILE, if set; when the trust file is set too,
    it must be a pipeline's key there (else the services would dead-letter the submission)."""
    signer, keyring = own_signer(settings), trusted(settings)
    if signer is not None and keyring is not None:
        try:
            client.identity(signer, keyring, "pipeline")
        except client.NotTrusted as exc:
            raise _fail(str(exc)) from None
    return signer
