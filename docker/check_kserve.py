"""Offline checks of the KServe objects in docker/ (no API server runs here):

1. every ClusterServingRuntime / InferenceService validates against its CRD's
   openAPIV3Schema (KServe's own CRDs, ../shared/reference/kserve/), with unknown fields
   rejected as `kubectl apply --validate=strict` does (an object schema without
   x-kubernetes-preserve-unknown-fields accepts only its listed properties);
2. the runtime would be admitted next to KServe's default runtimes by the validating
   webhook's rule (validateServingRuntimePriority / validateModelFormatPrioritySame);
3. the InferenceServices name this runtime with a format and protocol version it supports,
   and a gRPC one declares the h2c port 9000.

Each rule is also run on a known-bad object (the previous runtime's onnx priority 1, a field
that does not exist): a check that cannot fail fails.

    python docker/check_kserve.py [--reference DIR] FILE.yaml...
"""
import argparse
import copy
import pathlib
import re
import sys

import jsonschema
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_REFERENCE = ROOT.parent / "shared" / "reference" / "kserve"
CRD_FILES = {
    "ClusterServingRuntime": "serving.kserve.io_clusterservingruntimes.yaml",
    "ServingRuntime": "serving.kserve.io_servingruntimes.yaml",
    "InferenceService": "serving.kserve.io_inferenceservices.yaml",
}
DEFAULT_RUNTIMES = ["kserve-tritonserver.yaml", "kserve-tensorflow-serving.yaml", "kserve-openvino.yaml"]
DNS_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def strict(schema):
    """The CRD schema as the API server applies it with strict field validation: objects with
    `properties` take no other field unless x-kubernetes-preserve-unknown-fields is set."""
    schema = copy.deepcopy(schema)

    def visit(node):
        if isinstance(node, dict):
            if (node.get("type") == "object" and "properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return schema


class Schemas:
    def __init__(self, reference):
        self.validators = {}
        for kind, name in CRD_FILES.items():
            crd = yaml.safe_load((reference / name).read_text())
            group = crd["spec"]["group"]
            for version in crd["spec"]["versions"]:
                schema = strict(version["schema"]["openAPIV3Schema"])
                self.validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)

    def errors(self, document):
        key = (document.get("apiVersion"), document.get("kind"))
        validator = self.validators.get(key)
        if validator is None:
            return [f"no CRD version serves apiVersion {key[0]} kind {key[1]}"]
        errors = [f"{'.'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
                  for error in validator.iter_errors(document)]
        name = (document.get("metadata") or {}).get("name", "")
        if not DNS_1123_SUBDOMAIN.match(name) or len(name) > 253:
            errors.append(f"metadata.name {name!r} is not a DNS-1123 subdomain")
        return errors


# --- KServe's webhook rule (pkg/webhook/admission/servingruntime) --------------------------------
def formats_equal(a, b):
    return a["name"].lower() == b["name"].lower() and a.get("version") == b.get("version")


def multi_model(spec):
    return bool(spec.get("multiModel"))


def disabled(spec):
    return bool(spec.get("disabled"))


def priority_conflict(new_name, new_spec, existing_name, existing_spec):
    """validateServingRuntimePriority: the error the webhook would give, or None."""
    if multi_model(new_spec) != multi_model(existing_spec) or disabled(existing_spec) or new_name == existing_name:
        return None
    if not set(existing_spec.get("protocolVersions", [])) & set(new_spec.get("protocolVersions", [])):
        return None
    for existing in existing_spec.get("supportedModelFormats", []):
        for new in new_spec.get("supportedModelFormats", []):
            if (existing.get("autoSelect") and new.get("autoSelect") and formats_equal(existing, new)
                    and existing.get("priority") is not None and new.get("priority") is not None
                    and existing["priority"] == new["priority"]):
                return (f"{new['name']} v{new.get('version')} priority {new['priority']} is also "
                        f"{existing_name}'s (shared protocol versions)")
    return None


def own_priorities_consistent(spec):
    """validateModelFormatPrioritySame: one priority per auto-selected format name."""
    seen = {}
    for model_format in spec.get("supportedModelFormats", []):
        if not model_format.get("autoSelect"):
            continue
        name = model_format["name"]
        if name in seen:
            if seen[name] is not None and model_format.get("priority") is not None and seen[name] != model_format["priority"]:
                return f"{name} has different priorities across its versions"
        else:
            seen[name] = model_format.get("priority")
    return None


def webhook_errors(runtime, defaults):
    name, spec = runtime["metadata"]["name"], runtime["spec"]
    if disabled(spec):
        return []
    errors = [e for e in [own_priorities_consistent(spec)] if e]
    for default in defaults:
        problem = priority_conflict(name, spec, default["metadata"]["name"], default["spec"])
        if problem:
            errors.append(f"refused next to {default['metadata']['name']}: {problem}")
    return errors


def isvc_errors(isvc, runtimes):
    model = isvc["spec"]["predictor"].get("model") or {}
    runtime = runtimes.get(model.get("runtime"))
    if runtime is None:
        return [f"predictor.model.runtime {model.get('runtime')!r} is none of {sorted(runtimes)}"]
    spec = runtime["spec"]
    errors = []
    wanted = model.get("modelFormat", {})
    if not any(f["name"] == wanted.get("name") and (wanted.get("version") is None or f.get("version") == wanted.get("version"))
               for f in spec["supportedModelFormats"]):
        errors.append(f"model format {wanted} is not supported by {model['runtime']}")
    protocol = model.get("protocolVersion", "v1")
    if protocol not in spec.get("protocolVersions", []):
        errors.append(f"protocolVersion {protocol} is not among {spec.get('protocolVersions')}")
    if protocol.startswith("grpc"):
        ports = model.get("ports") or []
        if not any(p.get("name") == "h2c" and p.get("containerPort") == 9000 for p in ports):
            errors.append("a gRPC InferenceService needs ports: [{name: h2c, containerPort: 9000}]")
    return errors


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference", type=pathlib.Path, default=DEFAULT_REFERENCE)
    parser.add_argument("files", nargs="+", type=pathlib.Path)
    args = parser.parse_args()
    if not (args.reference / CRD_FILES["InferenceService"]).is_file():
        sys.exit(f"check_kserve: KServe reference files not found in {args.reference} (--reference DIR)")
    schemas = Schemas(args.reference)
    defaults = [yaml.safe_load((args.reference / name).read_text()) for name in DEFAULT_RUNTIMES]
    passed = failed = 0

    def report(label, errors):
        nonlocal passed, failed
        if errors:
            failed += 1
            print(f"FAIL {label}")
            for error in errors:
                print(f"     {error}")
        else:
            passed += 1
            print(f"PASS {label}")

    documents = []
    for path in args.files:
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append((path, document))
    runtimes = {d["metadata"]["name"]: d for _, d in documents if d.get("kind") == "ClusterServingRuntime"}
    if not runtimes:
        report("a ClusterServingRuntime among the files", ["none found"])
    for path, document in documents:
        label = f"{path.relative_to(ROOT) if path.is_absolute() and ROOT in path.parents else path}: {document.get('kind')} {document.get('metadata', {}).get('name')}"
        report(f"{label} matches the CRD schema (unknown fields rejected)", schemas.errors(document))
        if document.get("kind") == "ClusterServingRuntime":
            report(f"{label} is admitted next to KServe's default runtimes", webhook_errors(document, defaults))
            # The defaults themselves are valid and admitted together (the rule is not too strict).
        elif document.get("kind") == "InferenceService":
            report(f"{label} uses a format and protocol its runtime supports", isvc_errors(document, runtimes))

    # The checks must be able to fail.
    runtime = next(iter(runtimes.values()), None)
    if runtime is not None:
        bad = copy.deepcopy(runtime)
        bad["spec"]["supportedModelFormats"] = [{"name": "onnx", "version": "1", "autoSelect": True, "priority": 1}]
        report("negative: onnx v1 at priority 1 (Triton's) is refused by the webhook rule",
               [] if webhook_errors(bad, defaults) else ["accepted"])
        bad = copy.deepcopy(runtime)
        bad["spec"]["containers"][0]["securityContxt"] = {}
        report("negative: a misspelt container field is rejected by the schema",
               [] if schemas.errors(bad) else ["accepted"])
    report("the default runtimes validate and are admitted together",
           [e for d in defaults for e in schemas.errors(d) + webhook_errors(d, [x for x in defaults if x is not d])])
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
