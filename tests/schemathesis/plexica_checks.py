"""Plexica's own contract as schemathesis checks, loaded through SCHEMATHESIS_HOOKS by
tests/tests/openapi_fuzz.rs."""

import schemathesis


@schemathesis.check
def no_internal_graphql_error(ctx, response, case):
    """No 5xx, and every GraphQL error carries a code other than INTERNAL: a client's fault is
    a coded client error (BAD_USER_INPUT, BAD_CURSOR, FORBIDDEN, ...), never a server failure.
    schemathesis' own GraphQL check would count every coded error with a path as the server's."""
    if response.status_code >= 500:
        raise AssertionError(f"server error {response.status_code}")
    try:
        payload = response.json()
    except ValueError as error:
        raise AssertionError(f"the answer is not JSON: {error}") from error
    errors = payload.get("errors") if isinstance(payload, dict) else None
    for error in errors or []:
        extensions = error.get("extensions") if isinstance(error, dict) else None
        code = extensions.get("code") if isinstance(extensions, dict) else None
        if code in (None, "INTERNAL"):
            raise AssertionError(f"a GraphQL error without a client's code: {error}")
