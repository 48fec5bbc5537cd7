"""The request fuzz's parts (bench/fuzz_requests.py runs them; tests/integration/test_fuzz_requests.py too).

seeds        valid requests to start from, the kinds' schema fields, a case
mutations    field-level changes driven by the CRD schema (types, ranges, enums, lists, strings)
attacks      request-level attacks (plans, offerings, shares, metadata, updates) and the family registry
generated    specs hypothesis-jsonschema draws from the CRDs' openAPIV3Schema
cases        the run's cases, deterministic for a seed
environment  the city on the API server, and the operator on every real backend
runner       creating, classifying, following and deleting requests
inventory    what each backend holds, asked of the backend itself
"""
