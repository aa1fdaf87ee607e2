//! The other kinds (see [`crate::objects`]): create, get, list, patch and delete.

use hyper::{Method, Response};
use serde_json::Value;

use super::call::{json_response, parse_body, Body, Call};
use crate::objects::Kind;
use crate::patch::PatchKind;
use crate::shared::Shared;
use crate::status::ApiError;

/// create, get, list, patch and delete for the other kinds: no watch, no PUT.
pub fn handle(
    shared: &Shared,
    call: &Call,
    kind: &Kind,
    ns: Option<&str>,
    name: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let verb = match (&call.method, ns, name) {
        (&Method::GET, _, None) if !call.flag("watch") => "list",
        (&Method::POST, Some(_), None) => "create",
        (&Method::GET, Some(_), Some(_)) => "get",
        (&Method::PATCH, Some(_), Some(_)) => "patch",
        (&Method::DELETE, Some(_), Some(_)) => "delete",
        _ => return Err(ApiError::method_not_allowed()),
    };
    shared
        .stats
        .request(&verb.to_uppercase(), &kind.path_template(name.is_some()));
    shared
        .auth
        .authorize_on(&call.identity, verb, kind.resource(), ns, name)?;
    let (ns, name) = (ns.unwrap_or_default(), name.unwrap_or_default());
    let strict = call.param("fieldValidation") != Some("Ignore");
    let (code, body) = match verb {
        "list" => (200, shared.objects.list(kind, Some(ns).filter(|ns| !ns.is_empty()))),
        "create" => {
            let dry_run = call.param("dryRun") == Some("All");
            let object = parse_body(&call.body)?;
            (201, shared.objects.create(kind, ns, object, strict, dry_run)?)
        }
        "get" => (200, shared.objects.get(kind, ns, name)?),
        "patch" => {
            let content_type = call.content_type.as_deref().unwrap_or("");
            let patch_kind = PatchKind::from_content_type(content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
            let patch_doc: Value = parse_body(&call.body)?;
            (
                200,
                shared.objects.patch(kind, ns, name, (patch_kind, &patch_doc), strict)?,
            )
        }
        _ => (200, shared.objects.delete(kind, ns, name)?),
    };
    Ok(json_response(shared, code, &body))
}
