"""Reply checking (runner.chat.verdict): JSON and the step's schema, told in JSON's type names."""

from runner.chat.verdict import check_reply, compile_validator


def test_a_reply_of_the_wrong_type_is_named_by_json_types():
    schema = {"type": "object", "properties": {"count": {"type": "integer"}, "tags": {"type": "array"}}}
    verdict = check_reply('{"count": "7", "tags": {}}', compile_validator(schema))
    assert 'at /count: must be an integer, not string "7"' in verdict.problems
    assert "at /tags: must be an array, not object" in verdict.problems
