"""The OpenAPI description of the API (drf-spectacular): the envelope around each
result, the error envelope every operation can answer, and the path parameters."""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from builds.api import serializers as api
from builds.api.envelope import API_PREFIX


class ErrorSourceSerializer(serializers.Serializer):
    pointer = serializers.CharField(help_text='JSON pointer to the field at fault, e.g. "/branch".')


class ErrorSerializer(serializers.Serializer):
    code = serializers.IntegerField(help_text="Stable error code (docs/api.md lists them).")
    message = serializers.CharField(help_text='What went wrong; for a field, prefixed with its name ("branch: ...").')
    source = ErrorSourceSerializer(required=False, help_text="Present when one request field is at fault.")


class ResultInfoSerializer(serializers.Serializer):
    page = serializers.IntegerField()
    per_page = serializers.IntegerField()
    count = serializers.IntegerField(help_text="Items on this page.")
    total_count = serializers.IntegerField()
    total_pages = serializers.IntegerField()


class EnvelopeSerializer(serializers.Serializer):
    """Every response: success or not, the errors, the result (null on error)."""

    success = serializers.BooleanField()
    errors = ErrorSerializer(many=True)
    messages = serializers.ListField(child=serializers.CharField())
    result = serializers.JSONField(allow_null=True)
    result_info = ResultInfoSerializer(allow_null=True, help_text="Paging, on lists only; null otherwise.")


class ErrorEnvelopeSerializer(EnvelopeSerializer):
    """An error: success is false, errors says why, result is null."""


def enveloped(name: str, result: serializers.Field, *, paginated: bool = False) -> type[EnvelopeSerializer]:
    attrs = {"result": result, "__doc__": f"The envelope around {name}."}
    if paginated:
        attrs["result_info"] = ResultInfoSerializer()
    return type(f"{name}Envelope", (EnvelopeSerializer,), attrs)


EMPTY = EnvelopeSerializer
CONFLICT = OpenApiResponse(ErrorEnvelopeSerializer, description="The object's state does not allow this.")
WORKER = enveloped("Worker", api.WorkerSerializer())
WORKERS = enveloped("WorkerList", api.WorkerSerializer(many=True), paginated=True)
CONNECTION = enveloped("RepoConnection", api.RepoConnectionSerializer())
CONNECTIONS = enveloped("RepoConnectionList", api.RepoConnectionSerializer(many=True), paginated=True)
TRIGGER = enveloped("Trigger", api.TriggerSerializer())
TRIGGERS = enveloped("TriggerList", api.TriggerSerializer(many=True), paginated=True)
VARIABLES = enveloped(
    "EnvironmentVariables", serializers.DictField(child=api.EnvironmentVariableSerializer(), help_text="By name.")
)
DEPLOY_HOOK = enveloped("DeployHook", api.DeployHookSerializer())
DEPLOY_HOOKS = enveloped("DeployHookList", api.DeployHookSerializer(many=True), paginated=True)
BUILD = enveloped("Build", api.BuildSerializer())
BUILDS = enveloped("BuildList", api.BuildSerializer(many=True), paginated=True)
BUILDS_BY_ID = enveloped("BuildsById", api.BuildsByIdSerializer())
LOGS = enveloped("BuildLogs", api.LogsSerializer())
LIMITS = enveloped("AccountLimits", api.AccountLimitsSerializer())

# PATCH environment_variables takes a map keyed by variable name, which a serializer
# cannot describe.
VARIABLES_INPUT = {
    "type": "object",
    "description": "Variables to add or replace, by name.",
    "additionalProperties": {
        "type": "object",
        "properties": {
            "value": {"type": "string", "maxLength": api.MAX_VARIABLE_CHARS},
            "is_secret": {"type": "boolean", "description": "Default: unchanged, or false for a new variable."},
        },
        "required": ["value"],
    },
}

PATH_PARAMETERS = {
    "account_id": "The account's id (32 hex digits). A token works only for its own account.",
    "external_script_id": "The worker's tag (32 hex digits).",
    "build_uuid": "The build's build_uuid.",
    "trigger_uuid": "The trigger's trigger_uuid.",
    "repo_connection_uuid": "The connection's repo_connection_uuid.",
    "deploy_hook_uuid": "The deploy hook's deploy_hook_uuid.",
    "environment_variable_key": "The variable's name.",
}


ERROR_DESCRIPTIONS = {
    "400": "Invalid request: each error names the field (source.pointer).",
    "401": "Missing token from authorization header, or invalid token.",
    "403": "Your role in this account does not allow this.",
    "404": "No such account (for this token), object or route.",
    "429": "Too many requests for this token; see Retry-After.",
    "default": "Any other error, in the same envelope.",
}


class EnvelopeAutoSchema(AutoSchema):
    """Lists under every operation the error envelope for each status it can answer with."""

    def get_operation(self, *args, **kwargs) -> dict | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        error = {"application/json": {"schema": self.resolve_serializer(ErrorEnvelopeSerializer(), "response").ref}}
        for status, description in ERROR_DESCRIPTIONS.items():
            operation["responses"].setdefault(status, {"description": description, "content": error})
        return operation


def only_api_paths(endpoints: list) -> list:
    """drf-spectacular preprocessing hook: describe the API, not other DRF views."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith(API_PREFIX)]


def describe_path_parameters(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: path parameters keep the type their URL
    converter gives them and get a description."""
    for operations in result["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] in PATH_PARAMETERS:
                    parameter["description"] = PATH_PARAMETERS[parameter["name"]]
    return result
