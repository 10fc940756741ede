#!/usr/bin/env python3
"""Validates custom resources against the CRDs that `cistern crd` prints, as an API server with
strict field validation (kubectl's default) would: each object's schema (jsonschema) and no
field the schema does not know (an unknown field is an error under strict validation).

usage: validate_crs.py CRDS.yaml RESOURCES.yaml [RESOURCES.yaml ...]
Documents of kinds without a CRD (Secret, PVC, Pod, ...) are skipped. Exit status 1 on any error.
"""
import sys

import jsonschema
import yaml


def unknown_fields(instance, schema, path):
    """Paths in `instance` that `schema` does not declare (where it declares properties)."""
    out = []
    if isinstance(instance, dict) and isinstance(schema, dict):
        props = schema.get("properties")
        open_ended = schema.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in schema
        for key, value in instance.items():
            if props is not None and key in props:
                out += unknown_fields(value, props[key], f"{path}.{key}")
            elif "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
                out += unknown_fields(value, schema["additionalProperties"], f"{path}.{key}")
            elif props is not None and not open_ended:
                out.append(f"{path}.{key}")
    elif isinstance(instance, list) and isinstance(schema, dict) and "items" in schema:
        for i, item in enumerate(instance):
            out += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return out


def openapi_to_jsonschema(schema):
    """OpenAPI's `nullable: true` as JSON Schema's `null` type, everywhere in the schema."""
    if isinstance(schema, dict):
        out = {k: openapi_to_jsonschema(v) for k, v in schema.items()}
        if out.pop("nullable", False) and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(schema, list):
        return [openapi_to_jsonschema(v) for v in schema]
    return schema


def main():
    crds = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
    schemas = {}
    for crd in crds:
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schemas[(f'{crd["spec"]["group"]}/{version["name"]}', kind)] = openapi_to_jsonschema(version["schema"]["openAPIV3Schema"])
    errors, checked = [], 0
    for path in sys.argv[2:]:
        for doc in yaml.safe_load_all(open(path)):
            if not doc:
                continue
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key not in schemas:
                continue
            checked += 1
            name = f'{path}: {doc["kind"]} {doc.get("metadata", {}).get("name")}'
            schema = schemas[key]
            for e in jsonschema.Draft7Validator(schema).iter_errors(doc):
                errors.append(f"{name}: {'.'.join(str(p) for p in e.absolute_path)}: {e.message}")
            for field in unknown_fields(doc, schema, ""):
                if not field.startswith(".metadata") and not field.startswith(".apiVersion") and not field.startswith(".kind"):
                    errors.append(f"{name}: unknown field {field[1:]}")
    for e in errors:
        print(e)
    print(f"{checked} custom resources checked, {len(errors)} errors")
    sys.exit(1 if errors or checked == 0 else 0)


if __name__ == "__main__":
    main()
