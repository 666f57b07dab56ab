//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`. It lists every endpoint with
//! its method, purpose and error shape; a test calls each listed endpoint, so the list cannot
//! name a route the server does not have.

use serde_json::{json, Map, Value};

/// (method, path under /api/v1, summary, needs a session)
pub const ENDPOINTS: &[(&str, &str, &str, bool)] = &[
    (
        "post",
        "/bootstrap",
        "Exchange the one-time setup token for the first administrator and a session",
        false,
    ),
    (
        "post",
        "/login",
        "Log in with user name and password; returns a session token",
        false,
    ),
    ("post", "/logout", "End this session", true),
    ("get", "/whoami", "The logged-in person, their groups and session expiry", true),
    ("get", "/resources", "Resources and their roles and policies", true),
    (
        "get",
        "/requests",
        "List requests: scope=mine|review|all, status, resource, limit",
        true,
    ),
    ("post", "/requests", "Ask for a role on a resource for a time, with a reason", true),
    (
        "get",
        "/requests/{id}",
        "A request with its reviews, approval progress, grant and history",
        true,
    ),
    ("post", "/requests/{id}/approve", "Approve a request (not your own)", true),
    (
        "post",
        "/requests/{id}/deny",
        "Deny a request; an eligible approver's deny ends it",
        true,
    ),
    ("post", "/requests/{id}/cancel", "Cancel your own pending request", true),
    ("get", "/grants", "List grants: scope=mine|all, status, resource, limit", true),
    ("get", "/grants/{id}", "One grant", true),
    ("post", "/grants/{id}/revoke", "Revoke a grant early, with a reason", true),
    ("get", "/audit/events", "Audit events after a sequence number (after, limit)", true),
    ("get", "/audit/checkpoints", "Signed checkpoints of the audit chain", true),
    ("get", "/audit/verify", "Verify the live audit chain and its checkpoints", true),
    ("get", "/audit/public-key", "The Ed25519 key that signs audit checkpoints", true),
    ("get", "/admin/users", "List users", true),
    ("post", "/admin/users", "Create a user", true),
    (
        "post",
        "/admin/users/{name}/disable",
        "Disable a user: ends their sessions and revokes their grants",
        true,
    ),
    ("post", "/admin/users/{name}/enable", "Enable a user", true),
    (
        "post",
        "/admin/users/{name}/password",
        "Set a password (admins, or a person for themselves)",
        true,
    ),
    ("get", "/admin/groups", "Groups and members", true),
    ("put", "/admin/groups/{group}/members/{user}", "Add a member", true),
    ("delete", "/admin/groups/{group}/members/{user}", "Remove a member", true),
    (
        "put",
        "/admin/resources/{name}",
        "Create or replace a resource (not one from the config file)",
        true,
    ),
    (
        "delete",
        "/admin/resources/{name}",
        "Delete a resource (not one from the config file)",
        true,
    ),
    ("get", "/openapi.json", "This document", false),
];

pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, summary, auth) in ENDPOINTS {
        let mut op = json!({
            "summary": summary,
            "responses": {
                "2XX": {"description": "Success (JSON)"},
                "4XX": {"description": "Refused", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "503": {"description": "Store unavailable; nothing changed", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        if *auth {
            op["security"] = json!([{"bearer": []}]);
        }
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        let entry = paths.entry(format!("/api/v1{path}")).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "jitgate", "version": env!("CARGO_PKG_VERSION"), "description": "Just-in-time privileged access: requests, approvals, grants, audit."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}
                }
            }
        }
    })
}
