"""schemathesis hooks for jitgate.

JSON Schema counts 1.0 as an integer, and schemathesis sends such numbers on purpose; serde reads
them as floats and refuses them where the server takes a u32 or an i64. jitgate's integers are
what serde writes (no fraction part), so whole floats are sent as integers here rather than
documented as accepted.
"""
import schemathesis


def _ints(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


@schemathesis.hook
def map_body(context, body):
    return _ints(body)


@schemathesis.hook
def map_query(context, query):
    return _ints(query)
