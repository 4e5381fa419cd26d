import threading
import time

from thinkgym.rewards.structured import extract_json_text, json_reward

PERSON = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
PAIR_2020 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "array",
    "prefixItems": [{"type": "string"}, {"type": "number"}],
    "items": False,
}


def test_extraction_sources():
    assert extract_json_text('{"a": 1}') == '{"a": 1}'
    assert extract_json_text('Sure:\n```json\n{"a": 1}\n```\nDone') == '{"a": 1}'
    assert extract_json_text('```\n[1]\n```') == "[1]"
    assert extract_json_text('<think>{"x":0}</think><answer>\n{"a": 2}\n</answer>') == '{"a": 2}'
    assert extract_json_text("no json here") is None


def test_valid_object_with_expected_values():
    completion = '```json\n{"name": "Ada", "age": 36}\n```'
    assert json_reward(completion, PERSON, {"name": "Ada", "age": 36}) == 1.0
    score = json_reward(completion, PERSON, {"name": "Ada", "age": 37})
    assert score == 0.0 and score.reason == "wrong_value: age"


def test_schema_violations_are_named():
    score = json_reward('{"name": "Ada", "age": -1}', PERSON)
    assert score == 0.0 and score.reason.startswith("schema_violation at age")
    assert json_reward('{"name": "Ada", "age": 3, "x": 1}', PERSON).reason.startswith("schema_violation")


def test_draft_2020_12_prefix_items():
    assert json_reward('["a", 1.5]', PAIR_2020) == 1.0
    assert json_reward('["a", 1.5, 3]', PAIR_2020) == 0.0
    assert json_reward('[1, "a"]', PAIR_2020) == 0.0


def test_strict_equality_of_expected_values():
    assert json_reward('{"ok": 1}', None, {"ok": True}).reason == "wrong_value: ok"
    assert json_reward('{"n": 2.0}', None, {"n": 2}) == 1.0
    assert json_reward('{"n": "2"}', None, {"n": 2}) == 0.0
    assert json_reward('[1]', None, {"n": 2}).reason == "missing_field: n"


def test_failures_never_raise():
    assert json_reward("").reason == "no_json_found"
    assert json_reward("{'single': 'quotes'}").reason.startswith("invalid_json")
    assert json_reward("[" * 200_000 + "]" * 200_000).reason.startswith("invalid_json")
    assert json_reward("\x00\xff{").reason == "no_json_found"
    bad_schema = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "nonsense"}
    assert json_reward("{}", bad_schema).reason.startswith("invalid_schema")


def test_catastrophic_pattern_is_cut_off_off_the_main_thread():
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}
    completion = '{"s": "' + "a" * 40 + '!"}'
    result = {}

    def run():
        start = time.monotonic()
        result["score"] = json_reward(completion, schema, timeout=1.0)
        result["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert result["score"] == 0.0 and result["score"].reason == "timeout"
    assert result["seconds"] < 5
