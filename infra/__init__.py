"""The Pulumi program that stands up the central exchange on Kubernetes (see docs/infra.md).

`__main__.py` is what `pulumi up` runs; `program.py` composes the components of `components/`
from a stack's settings (`settings.py`); `render.py` runs the same program under Pulumi's mocks
and writes the manifests; `rules.py` holds the policy rules that `policy/` enforces in
`pulumi preview --policy-pack` and the tests apply to the rendered manifests.
"""
