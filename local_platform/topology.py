"""What the local platform is made of and where each part lives: three departments of Zhangjiagang,
their front-end nodes and business databases on one podman network, and who shares what with whom.

The public security bureau (公安局) publishes its population table unconditionally; the market
regulation bureau (市场监督管理局) publishes its legal-entity register on conditions; the health
commission (卫生健康委员会) subscribes to the first and requests some fields of the second.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gdx.sharing import DatabaseAddress, Publication, Subscription

NETWORK = "gdx-local"
# Not podman's own ranges (it allocates 10.88.0.0/16 and 10.89.N.0/24 for the networks it names).
NETWORK_PREFIX = "10.231.47"
SUBNET = f"{NETWORK_PREFIX}.0/24"
GATEWAY = f"{NETWORK_PREFIX}.1"  # this machine as the containers see it: the exchange, the monitor
LABEL = "io.gdx.local-platform"  # on every container and network make up creates; make down removes by it
JURISDICTION = "zhangjiagang"


@dataclass(frozen=True)
class BusinessDatabase:
    """A department's business database: a container on the local network, listed in the inventory
    as ``connection`` and published from as ``publication`` (the models of gdx/sharing.py)."""

    container: str
    connection: DatabaseAddress
    publication: Publication
    key: str  # the catalog entry's key field

    @property
    def kind(self) -> str:
        return self.connection.kind

    @property
    def address(self) -> str:
        return self.connection.host

    @property
    def port(self) -> int:
        return self.connection.port

    @property
    def database(self) -> str:
        return self.connection.name

    @property
    def table(self) -> str:  # as the agent reads it
        return self.publication.table

    @property
    def resource(self) -> str:
        return self.publication.resource


class PlannedSubscription(Subscription):
    """A subscription, and for a conditional resource the fields asked for and those the provider
    approves (make up files the request and approves it)."""

    requested: tuple[str, ...] = ()
    approved: tuple[str, ...] = ()


@dataclass(frozen=True)
class Department:
    id: str
    name: str
    host: str  # the front-end node's container and inventory name
    address: str
    business_db: BusinessDatabase | None = None
    subscribes: tuple[PlannedSubscription, ...] = field(default=())


READER = "gdx_reader"  # the business databases' read-only account, for the agents
POPULATION = "zjg-gaj.population"
LEGAL_ENTITY = "zjg-scjgj.legal-entity"


def _provider(
    dept_id: str, name: str, n: int, kind: str, port: int, database: str, publication: Publication, key: str
) -> Department:
    """A providing department: its node at .1n, its business database (container gdx-biz-X) at .2n."""
    short = dept_id.removeprefix("zjg-")
    connection = DatabaseAddress.model_validate(
        {"kind": kind, "host": f"{NETWORK_PREFIX}.2{n}", "port": port, "name": database, "user": READER}
    )
    return Department(
        id=dept_id, name=name, host=f"gdx-fe-{short}", address=f"{NETWORK_PREFIX}.1{n}",
        business_db=BusinessDatabase(f"gdx-biz-{short}", connection, publication, key),
    )  # fmt: skip


# Both registers are published by log capture (their containers set up by the DBA's checklist,
# front_end_node/dba_checklist.py): a deletion reaches the subscriber within seconds.

DEPARTMENTS = (
    _provider(
        "zjg-gaj", "张家港市公安局", 1, "postgresql", 5432, "hukou",
        Publication(resource=POPULATION, table="public.population", capture="log"), "id_number",
    ),
    _provider(
        "zjg-scjgj", "张家港市市场监督管理局", 2, "mariadb", 3306, "market",
        Publication(resource=LEGAL_ENTITY, table="legal_entity", capture="log"), "credit_code",
    ),
    Department(
        id="zjg-wjw",
        name="张家港市卫生健康委员会",
        host="gdx-fe-wjw",
        address=f"{NETWORK_PREFIX}.13",
        subscribes=(
            PlannedSubscription(resource=POPULATION, purpose="城乡居民医保参保登记核验", table="public.gaj_population"),
            PlannedSubscription(
                resource=LEGAL_ENTITY,
                purpose="医疗机构法人主体资格核验",
                table="public.scjgj_legal_entity",
                requested=("credit_code", "name", "legal_representative", "status", "established"),
                approved=("credit_code", "name", "status", "established"),
            ),
        ),
    ),
)  # fmt: skip
BY_ID = {d.id: d for d in DEPARTMENTS}


def provider_of(resource: str) -> Department:
    return next(d for d in DEPARTMENTS if d.business_db and d.business_db.resource == resource)
