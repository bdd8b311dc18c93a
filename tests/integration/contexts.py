"""Platform contexts the integration tests hand to instrumented handlers."""

from __future__ import annotations


class LambdaContext:
    """AWS LambdaContext's documented attributes, function ``checkout`` version 12;
    ``remaining_ms``: what ``get_remaining_time_in_millis`` answers (a start event
    carries it as the invocation's timeout)."""

    function_name = "checkout"
    function_version = "12"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:checkout"

    def __init__(self, request_id: str, remaining_ms: int = 30_000) -> None:
        self.aws_request_id = request_id
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms
