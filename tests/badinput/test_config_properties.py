"""Property tests over the config loader: any input gives a valid Config or a clean ConfigError.

"Clean" means: a ConfigError (never another exception or a traceback) whose every problem line
reads 'field.path: reason', and whose path names a field that exists, a key the input really
had, or the file / top level itself.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from jobqueue.config import Config, build_config, load
from jobqueue.errors import ConfigError


def leaf_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name, f in model.model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += leaf_paths(ann, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


LEAVES = leaf_paths(Config)
SECTIONS = sorted({p[0] for p in LEAVES})
KNOWN_PREFIXES = {".".join(p[:i]) for p in LEAVES for i in range(1, len(p) + 1)}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["1s", "500ms", "-1s", "1h30m", "0", "10x", "redis://h:1", "rediss://u:p@h:1/2", "a:b", ""]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


@st.composite
def config_data(draw: st.DrawFn) -> dict[str, Any]:
    """A mapping shaped like a config: real field paths with arbitrary values, plus stray keys."""
    data: dict[str, Any] = {}
    for path in draw(st.lists(st.sampled_from(LEAVES), max_size=8, unique=True)):
        node = data
        for part in path[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                break
            node = nxt
        else:
            node[path[-1]] = draw(values)
    if draw(st.booleans()):
        where = draw(st.sampled_from(["", *SECTIONS]))
        node = data.setdefault(where, {}) if where else data
        if isinstance(node, dict):
            node[draw(st.text(min_size=1, max_size=10))] = draw(values)
    if draw(st.integers(0, 9)) == 0:
        data[draw(st.sampled_from(SECTIONS))] = draw(scalars)  # a section that is not a mapping
    return data


def key_paths(data: Any, prefix: str = "") -> set[str]:
    """Every dotted path of mapping keys present in the input, as the error would spell it."""
    out: set[str] = set()
    if isinstance(data, dict):
        for k, v in data.items():
            path = f"{prefix}{k}"
            out.add(path)
            out |= key_paths(v, path + ".")
    return out


def assert_clean(err: ConfigError, data: Any = None) -> None:
    assert err.problems, "a ConfigError without problems"
    paths = KNOWN_PREFIXES | key_paths(data)
    for line in err.problems:
        assert "Traceback" not in line
        assert ": " in line and line.rsplit(": ", 1)[1].strip(), f"no reason in {line!r}"
        assert line.startswith("(") or any(line.startswith((f"{p}: ", f"{p}.")) for p in paths), (
            f"problem line does not start with a field path of the input: {line!r}"
        )


@pytest.mark.timeout(180)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config_data())
def test_any_mapping_gives_a_config_or_a_clean_error(data: dict[str, Any]) -> None:
    try:
        cfg = build_config(data, environ={})
    except ConfigError as err:
        assert_clean(err, data)
    else:
        assert isinstance(cfg, Config)


ENV_NAMES = ["_".join(p).upper() for p in LEAVES]


@pytest.mark.timeout(180)
@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(ENV_NAMES), st.text(max_size=20) | st.sampled_from(["[", "{a: [1", "[1,2]"]), max_size=5
    )
)
def test_any_environment_gives_a_config_or_an_error_naming_the_variable_field(env: dict[str, str]) -> None:
    try:
        build_config({}, environ=env)
    except ConfigError as err:
        assert_clean(err)
        fields = {name: ".".join(p) for name, p in zip(ENV_NAMES, LEAVES, strict=True)}
        named = {fields[k] for k in env}
        for line in err.problems:
            path = line.split(":")[0]
            assert path.startswith("(") or any(path.startswith(f) for f in named) or path in KNOWN_PREFIXES, line


@pytest.mark.timeout(180)
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_file_content_gives_a_config_or_a_clean_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "config.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            loaded = load(path, environ={})
        except ConfigError as err:
            try:
                parsed = yaml.safe_load(text)
            except yaml.YAMLError:
                parsed = None
            assert_clean(err, parsed)
            assert err.source == str(path)
        else:
            assert isinstance(loaded.config, Config)


def test_a_directory_or_unreadable_path_is_a_clean_error(tmp_path: Path) -> None:
    for bad in (tmp_path, tmp_path / "no-such-dir" / ".."):
        try:
            load(bad, environ={})
        except ConfigError as err:
            assert_clean(err)
