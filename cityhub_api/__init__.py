"""cityhub's neutral API package: the facts every other package shares, and nothing else.

    cityhub_api.api         API group/version, category, finalizer and annotation prefixes
    cityhub_api.labels      every label and annotation key cityhub writes (and the system namespace)
    cityhub_api.registry    component types: one folder each under component_types/, discovered here
    cityhub_api.schemas     the shared JSON Schemas in schemas/ and a request's composed schema
    cityhub_api.catalog     the catalog (ComponentOffering entries each type ships), validated
    cityhub_api.crds        CRDs rendered from the schemas
    cityhub_api.apidocs     the generated API reference and the README's component table
    cityhub_api.units       limit kinds: durations, quantities, integers
    cityhub_api.settings    the one way to read a setting from the environment

It imports only the standard library, PyYAML and jsonschema, so the Pulumi program, the CLI, the operator and
the policy pack can all depend on it (checked by .importlinter). Nothing else reads `schemas/` or spells a
label key.
"""
