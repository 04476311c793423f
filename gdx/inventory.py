"""The one inventory: an Ansible YAML inventory that also feeds the exchange's department
registry and the monitoring agent's targets.

The GDX part of it: under ``all.vars``, the exchange's URL (gdx_exchange_url), the PKI folder
(gdx_pki_dir) and any jurisdictions beyond the built-in ones (gdx_jurisdictions); under the group
``gdx_front_end_nodes``, one host per department with its gdx_department, and what it shares:
gdx_business_db (the password a !vault block), gdx_publishes, gdx_subscribes. The reference is
docs/inventory.md; playbooks/inventory.example.yml is a complete example.

Validation collects every problem at once and names each by its path in the file, so a
technician fixes the whole inventory in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gdx.pki import PkiError, Role, identity_of, verify_issued_by
from gdx.protocol import DEPARTMENT_PATTERN

# A node's business database, publications and subscriptions go into its node.yml as they are:
# checked here by the agent's own models, every setting of them included (lookback_s, timezone, ...).
from gdx.sharing import DatabaseAddress, Publication, Subscription

NODE_GROUP = "gdx_front_end_nodes"

DEFAULT_REPLY_WORKING_DAYS = 5


class JurisdictionSpec(BaseModel):
    """Whose rules apply to a department's sharing, and the deadlines they set. None: the
    regulation sets no such deadline, and GDX sets none either."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    reply_working_days: int | None = Field(
        default=DEFAULT_REPLY_WORKING_DAYS, ge=1, le=60, description="The provider answers a request (working days)"
    )
    negotiation_working_days: int | None = Field(
        default=None, ge=1, le=60, description="Consumer and provider negotiate a refused or not-shared resource"
    )
    explanation_days: int | None = Field(
        default=None, ge=1, le=120, description="The provider explains in writing to the authority (calendar days)"
    )
    decision_days: int | None = Field(
        default=None, ge=1, le=120, description="The authority decides, from the explanation's receipt (calendar days)"
    )
    catalog_update_working_days: int | None = Field(
        default=None, ge=1, le=60, description="A catalog entry follows a change of the data, duties or law"
    )


# The deadlines the seed texts set (../shared/seeds; docs/inventory.md has the articles). An
# inventory may add jurisdictions or replace these under all.vars.gdx_jurisdictions.
BUILTIN_JURISDICTIONS: dict[str, JurisdictionSpec] = {
    # ZJG Art. 20: reply within 5 working days; Art. 12: catalog updated within 3 working days.
    "zhangjiagang": JurisdictionSpec(name="张家港市", reply_working_days=5, catalog_update_working_days=3),
    # Wushen Art. 21: reply within 5, negotiation within 5 working days; Art. 7: catalog within 15.
    "wushen": JurisdictionSpec(
        name="乌审旗", reply_working_days=5, negotiation_working_days=5, catalog_update_working_days=15
    ),
    # Ningxia Art. 11: reply within 10 working days; Art. 8: catalog within 15.
    "ningxia": JurisdictionSpec(name="宁夏回族自治区", reply_working_days=10, catalog_update_working_days=15),
    # Hebei Art. 13: no reply deadline (the parties negotiate); after an application to the
    # authority, the provider explains within 15 days and the authority settles within 30 days of
    # receiving the explanation (calendar days: 十五日, 三十日).
    "hebei": JurisdictionSpec(name="河北省", reply_working_days=None, explanation_days=15, decision_days=30),
    # The Suqian seed is an interpretation that names no deadline: none until the inventory sets one.
    "suqian": JurisdictionSpec(name="宿迁市", reply_working_days=None),
}


class VaultSecret:
    """A value encrypted with ansible-vault (``!vault``); GDX never needs the plain text."""

    def __init__(self, ciphertext: str) -> None:
        self.ciphertext = ciphertext

    def __repr__(self) -> str:
        return "VaultSecret(...)"


class _InventoryLoader(yaml.SafeLoader):
    pass


def _vault_constructor(loader: yaml.SafeLoader, node: yaml.Node) -> VaultSecret:
    return VaultSecret(str(loader.construct_scalar(node)))  # type: ignore[arg-type]


_InventoryLoader.add_constructor("!vault", _vault_constructor)


class InventoryError(Exception):
    """The inventory is unusable; ``problems`` lists every bad entry as 'path: message'."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class DepartmentSpec(_Strict):
    id: str = Field(pattern=DEPARTMENT_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    jurisdiction: str = Field(min_length=1)
    inbox_webhook: str | None = Field(
        default=None, pattern=r"^https?://[^\s/]+(/\S*)?$", max_length=500,
        description="Where the exchange posts each new item of the department's inbox (JSON)",
    )  # fmt: skip


class BusinessDb(DatabaseAddress):
    """As the inventory holds it: the password a vault block, which GDX never opens (Ansible
    writes it to a file on the node, and the node's config names the file)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    password: VaultSecret | str | None = None


class NodeVars(BaseModel):
    """The GDX variables of one host; Ansible's own variables (ansible_*) pass through."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    ansible_host: str | None = None
    gdx_department: DepartmentSpec
    gdx_business_db: BusinessDb | None = None
    gdx_publishes: list[Publication] = Field(default_factory=list)
    gdx_subscribes: list[Subscription] = Field(default_factory=list)
    gdx_agent_port: int = Field(default=9470, ge=1, le=65535)


@dataclass(frozen=True)
class Node:
    host: str
    address: str
    department_id: str
    department_name: str
    jurisdiction: str
    inbox_webhook: str | None
    agent_port: int
    business_db: BusinessDb | None
    publishes: tuple[Publication, ...]
    subscribes: tuple[Subscription, ...]


@dataclass(frozen=True)
class Inventory:
    path: Path
    exchange_url: str | None
    pki_dir: Path | None
    jurisdictions: dict[str, JurisdictionSpec]
    nodes: tuple[Node, ...]


def _loc(prefix: str, loc: tuple[int | str, ...]) -> str:
    return ".".join([prefix, *(str(part) for part in loc)])


def _pydantic_problems(prefix: str, exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown setting (misspelt?)"
        elif err["type"] == "string_pattern_mismatch":
            message = f"{err['input']!r} is not allowed here: {message}"
        problems.append(f"{_loc(prefix, err['loc'])}: {message}")
    return problems


def _duplicates(hosts: dict[str, Any]) -> list[str]:
    """Departments or addresses used twice, read from the raw entries so that a host with
    other problems still counts."""
    departments: dict[str, list[str]] = {}
    addresses: dict[str, list[str]] = {}
    for host, host_vars in hosts.items():
        host_vars = host_vars if isinstance(host_vars, dict) else {}
        dept = host_vars.get("gdx_department")
        if isinstance(dept, dict) and isinstance(dept.get("id"), str):
            departments.setdefault(dept["id"], []).append(str(host))
        addresses.setdefault(str(host_vars.get("ansible_host") or host), []).append(str(host))
    problems = [
        f"department {dept_id!r} is listed on {len(on)} hosts ({', '.join(on)}); one node each"
        for dept_id, on in departments.items()
        if len(on) > 1
    ]
    problems += [
        f"address {address!r} is used by {len(on)} hosts ({', '.join(on)})"
        for address, on in addresses.items()
        if len(on) > 1
    ]
    return problems


VAULT_HEADER = b"$ANSIBLE_VAULT;"


def _read_pem_cert(path: Path) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PkiError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise PkiError(f"{path} is not a PEM certificate") from None


def _certificate_problems(pki_dir: Path, departments: list[str]) -> list[str]:
    """The files the agent role places on each node: ca.crt, DEPT.crt and DEPT.key, as
    `gdx ca issue DEPT` writes them. A key may be vault-encrypted (then it is not opened)."""
    prefix = "all.vars.gdx_pki_dir"
    try:
        ca = _read_pem_cert(pki_dir / "ca.crt")
    except PkiError as exc:
        return [f"{prefix}: {exc}; create the CA with `gdx ca init --dir {pki_dir}`"]
    problems = []
    for dept in departments:
        cert_path, key_path = pki_dir / f"{dept}.crt", pki_dir / f"{dept}.key"
        fix = f"issue one with `gdx ca issue {dept} --dir {pki_dir}`"
        try:
            cert = _read_pem_cert(cert_path)
            verify_issued_by(cert, ca)
            identity = identity_of(cert)
        except PkiError as exc:
            problems.append(f"certificate of {dept!r}: {exc}; {fix}")
            continue
        if identity.name != dept or identity.role is not Role.DEPARTMENT:
            problems.append(
                f"certificate of {dept!r}: {cert_path} names {identity.name!r} ({identity.role.value}), "
                f"not the department; {fix}"
            )
            continue
        try:
            key_data = key_path.read_bytes()
        except OSError as exc:
            problems.append(f"key of {dept!r}: cannot read {key_path}: {exc.strerror}; {fix}")
            continue
        if key_data.startswith(VAULT_HEADER):
            continue
        try:
            key = serialization.load_pem_private_key(key_data, password=None)
        except (ValueError, TypeError):
            problems.append(f"key of {dept!r}: {key_path} is not an unencrypted PEM private key")
            continue
        if key.public_key().public_bytes(*_SPKI) != cert.public_key().public_bytes(*_SPKI):
            problems.append(f"key of {dept!r}: {key_path} does not belong to {cert_path}; {fix}")
    return problems


_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InventoryError(path, [f"cannot read the file: {exc.strerror}"]) from None
    try:
        return yaml.load(text, Loader=_InventoryLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise InventoryError(path, [f"not valid YAML: {exc}"]) from None


def load_inventory(path: Path, *, require_secrets: bool = True) -> Inventory:
    """Read and validate the inventory, raising InventoryError with every problem found.

    ``require_secrets`` (what provisioning needs): business database passwords vault-encrypted,
    and every department's certificate and key present under ``gdx_pki_dir``."""
    data = read_yaml(path)
    problems: list[str] = []
    if not isinstance(data, dict) or not isinstance(data.get("all"), dict):
        raise InventoryError(path, ["the file must start with 'all:' (an Ansible YAML inventory)"])
    top = data["all"]
    top_vars = top.get("vars") or {}
    if not isinstance(top_vars, dict):
        raise InventoryError(path, ["all.vars must be a mapping"])

    jurisdictions = dict(BUILTIN_JURISDICTIONS)
    for key, spec in (top_vars.get("gdx_jurisdictions") or {}).items():
        try:
            parsed = JurisdictionSpec.model_validate(spec)
        except ValidationError as exc:
            problems += _pydantic_problems(f"all.vars.gdx_jurisdictions.{key}", exc)
            continue
        jurisdictions[key] = parsed

    group = (top.get("children") or {}).get(NODE_GROUP)
    hosts = (group or {}).get("hosts") or {}
    if not isinstance(hosts, dict) or not hosts:
        problems.append(f"all.children.{NODE_GROUP}.hosts: no front-end nodes are listed")
        hosts = {}

    nodes: list[Node] = []
    problems += _duplicates(hosts)
    for host, host_vars in hosts.items():
        prefix = f"all.children.{NODE_GROUP}.hosts.{host}"
        try:
            parsed_node = NodeVars.model_validate(host_vars or {})
        except ValidationError as exc:
            problems += _pydantic_problems(prefix, exc)
            continue
        dept = parsed_node.gdx_department
        if dept.jurisdiction not in jurisdictions:
            known = ", ".join(sorted(jurisdictions))
            problems.append(
                f"{prefix}.gdx_department.jurisdiction: unknown jurisdiction {dept.jurisdiction!r} "
                f"(known: {known}); declare it under all.vars.gdx_jurisdictions"
            )
        db = parsed_node.gdx_business_db
        if db is not None and require_secrets:
            if db.password is None:
                problems.append(
                    f"{prefix}.gdx_business_db.password: missing secret (encrypt it with "
                    "`ansible-vault encrypt_string`)"
                )
            elif not isinstance(db.password, VaultSecret):
                problems.append(
                    f"{prefix}.gdx_business_db.password: stored in plain text; encrypt it with "
                    "`ansible-vault encrypt_string` and paste the !vault block"
                )
        nodes.append(
            Node(
                host=str(host),
                address=parsed_node.ansible_host or str(host),
                department_id=dept.id,
                department_name=dept.name,
                jurisdiction=dept.jurisdiction,
                inbox_webhook=dept.inbox_webhook,
                agent_port=parsed_node.gdx_agent_port,
                business_db=db,
                publishes=tuple(parsed_node.gdx_publishes),
                subscribes=tuple(parsed_node.gdx_subscribes),
            )
        )

    pki_dir = None
    if top_vars.get("gdx_pki_dir"):
        pki_dir = (path.parent / str(top_vars["gdx_pki_dir"])).resolve()
    if require_secrets:
        if pki_dir is None:
            problems.append(
                "all.vars.gdx_pki_dir: missing; set it to the folder of the CA and the departments' "
                "certificates (`gdx ca init --dir DIR`, `gdx ca issue DEPT --dir DIR`)"
            )
        else:
            problems += _certificate_problems(pki_dir, [node.department_id for node in nodes])

    if problems:
        raise InventoryError(path, problems)
    exchange_url = top_vars.get("gdx_exchange_url")
    return Inventory(
        path=path,
        exchange_url=str(exchange_url) if exchange_url else None,
        pki_dir=pki_dir,
        jurisdictions=jurisdictions,
        nodes=tuple(nodes),
    )


def central_view(path: Path) -> str:
    """The inventory as the central services need it (exchange registry, monitoring targets):
    validated, with every host's business database connection, vault block included, left out."""
    load_inventory(path, require_secrets=False)
    data = read_yaml(path)
    for host_vars in (data["all"]["children"][NODE_GROUP]["hosts"] or {}).values():
        if isinstance(host_vars, dict):
            host_vars.pop("gdx_business_db", None)
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
