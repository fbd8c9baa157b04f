"""OpenAPI paths and schemas of GET /nodes."""
from __future__ import annotations

SCHEMAS = {
    "Node": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "description": "ABRAR_NODE_ID (default host name:port)"},
            "url": {"type": "string", "description": "where other nodes and redirected clients reach it"},
            "started_at": {"type": "string", "format": "date-time", "nullable": True},
            "last_heartbeat": {"type": "string", "format": "date-time"},
            "heartbeat_age_s": {"type": "number"},
            "alive": {"type": "boolean", "description": "heard from within ABRAR_CLUSTER_NODE_TIMEOUT_S"},
            "self": {"type": "boolean", "description": "the node that answered"},
            "capacity": {"type": "object", "additionalProperties": {"type": "integer"}},
            "load": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    },
    "NodeList": {
        "type": "object",
        "properties": {"nodes": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
                       "database": {"type": "string", "enum": ["sqlite", "postgresql"]}},
    },
}

PATHS = {
    "/nodes": {"get": {
        "summary": "The nodes of the cluster (one without ABRAR_DATABASE_URL)", "tags": ["server"],
        "description": "Each node's id, address, last heartbeat, capacity and load. "
                       "Metrics are per node: scrape /metrics on each.",
        "responses": {"200": {"description": "Nodes", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/NodeList"}}}}}}},
}
