"""Publishing CloudEvents to an Event Grid (Basic) custom topic through azure-core's pipeline.

Why not `azure.eventgrid.EventGridPublisherClient`: for a Basic topic it drops its keyword
arguments, so neither `retry_total=0` nor the shared transport reach its pipeline and its own
retries (three per attempt) multiply retry.py's. This is the same call with no retry policy of
its own: `POST <endpoint>?api-version=2018-01-01`, content type
`application/cloudevents-batch+json`, a bearer token for `https://eventgrid.azure.net/.default`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError, map_error
from azure.core.messaging import CloudEvent
from azure.core.pipeline.policies import (
    BearerTokenCredentialPolicy,
    ContentDecodePolicy,
    HeadersPolicy,
    RequestIdPolicy,
    UserAgentPolicy,
)
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest

from rotation.model.times import iso

API_VERSION = "2018-01-01"
SCOPE = "https://eventgrid.azure.net/.default"
CONTENT_TYPE = "application/cloudevents-batch+json; charset=utf-8"


def cloud_event_json(event: CloudEvent[Any]) -> dict[str, Any]:
    """A CloudEvent in the structured JSON mode of CloudEvents 1.0 (what the topic expects)."""
    body: dict[str, Any] = {
        "specversion": event.specversion,
        "id": event.id,
        "source": event.source,
        "type": event.type,
    }
    optional = {
        "time": iso(event.time) if isinstance(event.time, datetime) else None,
        "subject": event.subject,
        "datacontenttype": event.datacontenttype,
        "dataschema": event.dataschema,
        "data": event.data,
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    body.update(event.extensions or {})
    return body


class OutcomeTopic:
    """One topic endpoint; safe to share between threads."""

    def __init__(self, endpoint: str, credential: TokenCredential, transport: HttpTransport) -> None:
        self.endpoint = endpoint
        policies = [
            RequestIdPolicy(),
            HeadersPolicy(),
            UserAgentPolicy(sdk_moniker="cmk-rotation"),
            ContentDecodePolicy(),
            BearerTokenCredentialPolicy(credential, SCOPE),
        ]
        self._client: PipelineClient[HttpRequest, Any] = PipelineClient(
            endpoint, policies=policies, transport=transport
        )

    def send(self, events: list[CloudEvent[Any]]) -> None:
        """Publish the events; raises HttpResponseError (with Event Grid's code) when refused."""
        request = HttpRequest(
            "POST",
            self.endpoint,
            params={"api-version": API_VERSION},
            headers={"Content-Type": CONTENT_TYPE},
            content=json.dumps([cloud_event_json(e) for e in events]).encode(),
        )
        response = self._client.send_request(request)
        if not 200 <= response.status_code < 300:
            map_error(response.status_code, response, {})
            raise HttpResponseError(response=response)
