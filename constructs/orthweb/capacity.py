"""How many database connections the Orthanc hosts need, and how many an RDS class offers.

Several Orthanc servers share one PostgreSQL index (Orthanc >= 1.9.2 with the PostgreSQL plugin
>= 4.0), each holding its own pool of connections. RDS for PostgreSQL sizes ``max_connections``
from the instance memory: ``LEAST({DBInstanceClassMemory/9531392}, 5000)`` (AWS Prescriptive
Guidance, "Tuning PostgreSQL parameters: max_connections"). ``DBInstanceClassMemory`` is the
class's memory less what the OS and RDS processes keep; measured values run at 88-96% of the
nominal memory (for example 198 connections on a 2 GiB class), so the estimate here takes 75%.
Nothing here imports the AWS bindings: settings are checked with it before they load.
"""

from __future__ import annotations

import math
import re

# Index connections each Orthanc opens (orthanc.json PostgreSQL.IndexConnectionsCount): its four
# DICOM threads and a web request each get a connection without queueing for one.
INDEX_CONNECTIONS = 5
# The PostgreSQL storage plugin's connection, when images are kept in PostgreSQL.
STORAGE_CONNECTIONS = 1
# Kept free: superuser_reserved_connections (3) and rds.rds_superuser_reserved_connections (2),
# and five for operators and monitoring (psql, a restore, a migration).
RESERVED_CONNECTIONS = 10
# RDS's per-connection memory divisor, and the share of nominal memory counted as usable.
_BYTES_PER_CONNECTION = 9531392
_USABLE_MEMORY = 0.75
_MAX_CONNECTIONS = 5000

# Memory in GiB per size, by the first letter of the class family: burstable (t), general (m),
# memory-optimized (r). Families listed are the RDS for PostgreSQL classes of these kinds.
_T_SIZES = {"micro": 1, "small": 2, "medium": 4, "large": 8, "xlarge": 16, "2xlarge": 32}
_M_SIZES = {"large": 8, "xlarge": 16, "2xlarge": 32, "4xlarge": 64, "8xlarge": 128, "12xlarge": 192}
_M_SIZES |= {"16xlarge": 256, "24xlarge": 384, "32xlarge": 512, "48xlarge": 768}
_R_SIZES = {size: 2 * gib for size, gib in _M_SIZES.items()}
KNOWN_FAMILIES = {
    **dict.fromkeys(("t3", "t4g"), _T_SIZES),
    **dict.fromkeys(("m5", "m5d", "m6g", "m6gd", "m6i", "m6id", "m7g", "m7i", "m8g"), _M_SIZES),
    **dict.fromkeys(("r5", "r5b", "r5d", "r6g", "r6gd", "r6i", "r6id", "r7g", "r7i", "r8g"), _R_SIZES),
}
_CLASS_RE = re.compile(r"^db\.(?P<family>[a-z0-9]+)\.(?P<size>[a-z0-9]+)$")


def class_memory_gib(db_class: str) -> int | None:
    """Nominal memory of an RDS class in GiB, or None for a class this table does not know."""
    m = _CLASS_RE.match(db_class)
    if not m or m["family"] not in KNOWN_FAMILIES:
        return None
    return KNOWN_FAMILIES[m["family"]].get(m["size"])


def max_connections(db_class: str) -> int | None:
    """A conservative estimate of RDS's default ``max_connections`` for the class (None: unknown)."""
    gib = class_memory_gib(db_class)
    if gib is None:
        return None
    return min(int(gib * 2**30 * _USABLE_MEMORY) // _BYTES_PER_CONNECTION, _MAX_CONNECTIONS)


def surge_percentage(hosts: int) -> int:
    """The Auto Scaling group's maximum healthy percentage that lets exactly one extra host run
    while hosts are replaced (launch before terminate)."""
    return 100 + math.ceil(100 / hosts)


def connections_per_host(images_in_postgresql: bool) -> int:
    return INDEX_CONNECTIONS + (STORAGE_CONNECTIONS if images_in_postgresql else 0)


def connections_needed(hosts: int, images_in_postgresql: bool) -> int:
    """Connections the hosts can open at once, one extra host included (a rolling replacement
    launches the new host before the old one goes), plus the reserved ones."""
    return (hosts + 1) * connections_per_host(images_in_postgresql) + RESERVED_CONNECTIONS
