"""What `pulumi up` runs in infra/: the stack's settings, then every resource (infra/program.py)."""

from infra.program import declare
from infra.settings import from_pulumi

declare(from_pulumi())
