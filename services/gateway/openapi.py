"""The OpenAPI 3 document, generated from the endpoint declarations and
their marshmallow schemas (apispec), and a plain docs page built from it."""
import html
import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from services.gateway.schemas import ProblemSchema

PATH_PARAMETER = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")
ERROR_TEXT = {400: "Malformed request", 401: "Not logged in", 403: "Not allowed",
              404: "Not found (or not yours)", 409: "Conflict",
              422: "Invalid fields", 429: "Too many requests"}


def endpoints(service_cls):
    for name in sorted(dir(service_cls)):
        doc = getattr(getattr(service_cls, name), "api_doc", None)
        if doc is not None:
            yield doc


def build_spec(service_cls, version):
    spec = APISpec(
        title="Alongside API", version=version, openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "Referrals, volunteers, matching and support "
                             "for Community Parent programmes. Errors are "
                             "application/problem+json."})
    spec.components.schema("Problem", schema=ProblemSchema)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                               "bearerFormat": "JWT"})
    spec.components.security_scheme("apiKey", {"type": "apiKey", "in": "header",
                                               "name": "X-API-Key"})
    paths = {}
    for doc in endpoints(service_cls):
        openapi_path = PATH_PARAMETER.sub(r"{\1}", doc.path)
        paths.setdefault(openapi_path, {})[doc.method.lower()] = _operation(doc)
    for path, operations in sorted(paths.items()):
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def _operation(doc):
    operation = {"summary": doc.summary, "responses": {}}
    if doc.permission:
        operation["description"] = f"Needs the permission `{doc.permission}`."
    parameters = [{"name": name, "in": "path", "required": True,
                   "schema": {"type": "string"}}
                  for name in PATH_PARAMETER.findall(doc.path)]
    if doc.query:
        parameters.append({"in": "query", "schema": doc.query})
    parameters += [{"name": name, "in": "header", "required": False,
                    "description": description, "schema": {"type": "string"}}
                   for name, description in doc.headers]
    if parameters:
        operation["parameters"] = parameters
    if doc.body:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": doc.body}}}
    if doc.status == 204:
        operation["responses"]["204"] = {"description": "Done"}
    else:
        schema = doc.response
        content = {"schema": {"type": "array", "items": schema} if doc.many else schema} \
            if schema else {"schema": {"type": "object"}}
        operation["responses"][str(doc.status)] = {
            "description": "OK", "content": {"application/json": content}}
    codes = set(doc.errors)
    if doc.body or doc.query:
        codes |= {400, 422}
    if not doc.public:
        operation["security"] = [{"bearer": []}, {"apiKey": []}]
        codes |= {401, 403}
    for code in sorted(codes):
        operation["responses"][str(code)] = {
            "description": ERROR_TEXT.get(code, "Error"),
            "content": {"application/problem+json": {"schema": {
                "$ref": "#/components/schemas/Problem"}}}}
    return operation


def docs_page(spec):
    """A readable page of every operation, with no script from elsewhere."""
    rows = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            statuses = ", ".join(operation["responses"])
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td>"
                f"<td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(operation.get('summary', ''))}<br>"
                f"<small>{html.escape(operation.get('description', ''))}</small></td>"
                f"<td>{statuses}</td></tr>")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(spec['info']['title'])}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}"
        "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;"
        "padding:.4rem;text-align:left;vertical-align:top}</style></head><body>"
        f"<h1>{html.escape(spec['info']['title'])} {html.escape(spec['info']['version'])}</h1>"
        f"<p>{html.escape(spec['info']['description'])}</p>"
        "<p>Machine-readable: <a href='/api/v1/openapi.json'>openapi.json</a>. "
        "Authenticate with <code>Authorization: Bearer &lt;token&gt;</code> from "
        "<code>POST /api/v1/auth/token</code>, or <code>X-API-Key</code>.</p>"
        "<table><tr><th>Method</th><th>Path</th><th>What</th><th>Answers</th></tr>"
        + "".join(rows) + "</table></body></html>")
