"""Declared job configuration fields and the check of a received configuration.

An executor declares its fields; the SDK sends them in HELLO as the schema
JSON that the supervisor turns into a default base job template, the same
way Prefect derives one from a worker's configuration class.  When a JOB
arrives, check_config() fills in defaults and checks each declared field
against its JSON schema.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Union


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()
"""Marks a field whose schema has no "default" key (Prefect's env and labels)."""

JSON_TYPES = ("string", "integer", "number", "boolean", "object", "array", "null")


class ConfigError(ValueError):
    """A job configuration that does not match the declared fields."""


class Field:
    """One job configuration field.

    ``json_type`` is a JSON type name ("integer"), a list of names
    (["string", "null"], declared as anyOf as pydantic does for Optional),
    or a complete JSON schema dict.  ``template`` replaces the default
    "{{ name }}" placeholder in the derived base job template, for example
    "{{ memory }}Mi".  ``title`` defaults to the name in title case
    ("working_dir" becomes "Working Dir"), as pydantic derives it.
    """

    def __init__(self, name: str, json_type: Union[str, Sequence[str], Dict[str, Any]],
                 default: Any = NO_DEFAULT, description: str = "",
                 template: Optional[str] = None, title: Optional[str] = None):
        if not name or not name.isidentifier():
            raise ValueError(f"field name {name!r} must be a Python identifier")
        self.name = name
        self.json_type = json_type
        self.default = default
        self.description = description
        self.template = template
        self.title = title if title is not None else name.replace("_", " ").title()
        self.type_schema = _type_schema(name, json_type)

    def schema(self) -> Dict[str, Any]:
        """Return the field's JSON schema: title, type, default, description."""
        out: Dict[str, Any] = {"title": self.title}
        out.update(self.type_schema)
        if self.default is not NO_DEFAULT:
            out["default"] = self.default
        if self.description:
            out["description"] = self.description
        return out

    def declaration(self) -> Dict[str, Any]:
        """Return the entry of this field in the schema JSON's "fields" list."""
        out: Dict[str, Any] = {"name": self.name, "schema": self.schema()}
        if self.template is not None:
            out["template"] = self.template
        return out

    def missing_value(self) -> Any:
        """Return the value a configuration without this field gets.

        A field without a declared default gets an empty object or array
        when its type is one, as Prefect's default factories give, else null.
        """
        if self.default is not NO_DEFAULT:
            return _copy_json(self.default)
        kind = self.type_schema.get("type")
        if kind == "object":
            return {}
        if kind == "array":
            return []
        return None

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {self.json_type!r}, default={self.default!r})"


def _type_schema(name: str, json_type: Any) -> Dict[str, Any]:
    if isinstance(json_type, dict):
        return dict(json_type)
    if isinstance(json_type, str):
        json_type = [json_type]
    types = list(json_type)
    if not types:
        raise ValueError(f"field {name}: no JSON type given")
    for t in types:
        if t not in JSON_TYPES:
            raise ValueError(f"field {name}: {t!r} is not a JSON type, use one of "
                             f"{', '.join(JSON_TYPES)}")
    if len(types) == 1:
        return {"type": types[0]}
    return {"anyOf": [{"type": t} for t in types]}


def _copy_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    return value


# Fields every job configuration has, declared as Prefect 3's BaseJobConfiguration declares
# them: command and name are anyOf string/null with a null default, env is an object of
# string-or-null values and labels an object of strings, both without a "default" key.
COMMON_FIELDS: List[Field] = [
    Field("command", ["string", "null"], None,
          "Command that starts the flow run. Leave it unset to use the worker's default, "
          "'prefect flow-run execute'."),
    Field("env", {"type": "object",
                  "additionalProperties": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
          NO_DEFAULT,
          "Environment variables set for the flow run. A null value removes the variable.",
          title="Environment Variables"),
    Field("labels", {"type": "object", "additionalProperties": {"type": "string"}},
          NO_DEFAULT,
          "Labels attached to the infrastructure that runs the flow run."),
    Field("name", ["string", "null"], None,
          "Name given to the infrastructure that runs the flow run. It may use "
          "{{ ctx.flow.name }} and {{ ctx.flow_run.name }}."),
]
COMMON_NAMES = frozenset(f.name for f in COMMON_FIELDS)


def check_config(fields: Sequence[Field], config: Any) -> Dict[str, Any]:
    """Return the configuration restricted to the declared fields, defaults filled in.

    Keys that no field declares are dropped, as Prefect drops them.  Raises
    ConfigError naming the field, the value and the expected type.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"job configuration is {_type_of(config)}, expected an object")
    out: Dict[str, Any] = {}
    for f in fields:
        value = config[f.name] if f.name in config else f.missing_value()
        out[f.name] = check_value(f.type_schema, value, f.name)
    return out


def check_value(schema: Dict[str, Any], value: Any, path: str) -> Any:
    """Check a value against the subset of JSON schema that fields use.

    Supported keywords: type, anyOf, enum, properties, additionalProperties,
    items, minimum, maximum, minLength, maxLength.  Returns the value, with
    integral floats turned into int where the schema asks for an integer.
    """
    if "anyOf" in schema:
        reasons = []
        for option in schema["anyOf"]:
            try:
                return check_value(option, value, path)
            except ConfigError as exc:
                reasons.append(exc)
        expected = " or ".join(_expected(o) for o in schema["anyOf"])
        if len(reasons) == 1 or all(_is_type_error(r) for r in reasons):
            raise ConfigError(f"{path}: expected {expected}, got {_show(value)}")
        raise reasons[-1]

    kind = schema.get("type")
    if kind is not None:
        value = _check_type(kind, value, path)
    if "enum" in schema and value not in schema["enum"]:
        raise ConfigError(f"{path}: {_show(value)} is not one of {schema['enum']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_range(schema, value, path)
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            raise ConfigError(f"{path}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise ConfigError(f"{path}: longer than {schema['maxLength']} characters")
    if isinstance(value, dict):
        value = _check_object(schema, value, path)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [check_value(schema["items"], v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _check_type(kind: Any, value: Any, path: str) -> Any:
    kinds = kind if isinstance(kind, list) else [kind]
    for k in kinds:
        if k == "integer" and isinstance(value, float) and value.is_integer():
            return int(value)
        if _has_type(k, value):
            return value
    raise ConfigError(f"{path}: expected {' or '.join(kinds)}, got {_show(value)}")


def _check_range(schema: Dict[str, Any], value: Any, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}: {value} is not a finite number")
    if "minimum" in schema and value < schema["minimum"]:
        raise ConfigError(f"{path}: {value} is below the minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        raise ConfigError(f"{path}: {value} is above the maximum {schema['maximum']}")


def _check_object(schema: Dict[str, Any], value: Dict[str, Any], path: str) -> Dict[str, Any]:
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    out = {}
    for key, item in value.items():
        where = f"{path}.{key}"
        if key in props:
            out[key] = check_value(props[key], item, where)
        elif isinstance(extra, dict):
            out[key] = check_value(extra, item, where)
        elif extra is False:
            raise ConfigError(f"{where}: unknown key")
        else:
            out[key] = item
    return out


def _has_type(kind: str, value: Any) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    return False


def _is_type_error(exc: ConfigError) -> bool:
    return ": expected " in str(exc)


def _expected(schema: Dict[str, Any]) -> str:
    kind = schema.get("type", "any value")
    return " or ".join(kind) if isinstance(kind, list) else str(kind)


def _type_of(value: Any) -> str:
    for k in ("null", "boolean", "integer", "number", "string", "object", "array"):
        if _has_type(k, value):
            return "an " + k if k[0] in "aeiou" else "a " + k
    return type(value).__name__


def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{_type_of(value)} {text}" if value is not None else "null"
