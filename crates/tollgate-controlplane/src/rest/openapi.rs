//! The OpenAPI 3.1 document of the management API, served at `GET /api/v1/openapi.json`.
//!
//! Generated from the code: each handler's `#[utoipa::path]` is registered with
//! `utoipa_axum::routes!`, which adds the route to the router and the operation to the
//! document in one step, so the two are one table; the schemas come from the `ToSchema`
//! impls of the service's input and view types and of the core value types. This module
//! adds what every operation shares: the bearer security scheme, the one error body and
//! its responses, and the required scope (`x-required-scope`) spelled out in each
//! description.

use crate::ControlError;
use crate::service::Scope;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use tollgate_core::ScopeKind;
use tollgate_keys::KeyStatus;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, ObjectBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder, Type,
};
use utoipa::{PartialSchema, ToSchema};

/// The name of the security scheme every authenticated operation names.
const BEARER: &str = "bearer";
/// The extension naming the scope an operation requires.
pub(super) const SCOPE_EXTENSION: &str = "x-required-scope";

/// The body of every error response: `{"error": {"code", "message", "field"}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub(super) struct ErrorBody<'a> {
    /// What went wrong.
    pub(super) error: ErrorDetail<'a>,
}

/// The error itself.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ErrorDetail<'a> {
    /// A stable, machine-readable code.
    #[schema(schema_with = error_code_schema)]
    pub(super) code: &'static str,
    /// A human-readable explanation; never holds a secret.
    pub(super) message: String,
    /// The offending field or query parameter (a dotted path such as `budget.limit_usd`),
    /// when one is to blame.
    pub(super) field: Option<&'a str>,
}

fn error_code_schema() -> utoipa::openapi::Object {
    crate::service::enum_schema(ControlError::HTTP_CODES)
}

/// The body of a list that is not paginated: `{"data": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct List<T> {
    /// Every item.
    pub(super) data: Vec<T>,
}

/// Declares a string type of a query parameter, documented with its allowed values.
macro_rules! query_enum {
    ($($(#[doc = $doc:literal])* $name:ident => $values:expr;)+) => {
        $(
            $(#[doc = $doc])*
            pub(super) struct $name;

            impl PartialSchema for $name {
                fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
                    let mut s = crate::service::enum_schema($values);
                    s.description = Some([$($doc.trim()),*].join(" "));
                    s.into()
                }
            }

            impl ToSchema for $name {
                fn name() -> std::borrow::Cow<'static, str> {
                    std::borrow::Cow::Borrowed(stringify!($name))
                }
            }
        )+

        /// The schemas of the query parameter types, which operations refer to but
        /// `routes!` does not collect.
        fn query_schemas() -> Vec<(String, RefOr<utoipa::openapi::schema::Schema>)> {
            vec![$((stringify!($name).to_owned(), $name::schema())),+]
        }
    };
}

query_enum! {
    /// A stored key status (`expired` is derived, not stored, so it is no filter).
    KeyStatusFilter => [KeyStatus::Active.as_str(), KeyStatus::Revoked.as_str()];
    /// What `scope` of a usage or ledger query names: a budget scope kind (also spelled
    /// `org` and `key`), or `tag`.
    UsageScope => ScopeKind::ALL.iter().map(|k| k.as_str()).chain(["org", "key", "tag"]);
    /// A usage range ending now; `mtd` (also `month-to-date`) starts at the UTC month.
    UsageWindow => ["1h", "24h", "7d", "30d", "mtd", "month-to-date"];
    /// The format of a usage report.
    UsageFormatName => ["json", "csv"];
}

/// Declares an error response: an `IntoResponses` type naming one shared response
/// component, so each operation lists its error statuses by name.
macro_rules! error_responses {
    ($($(#[$doc:meta])* $name:ident => $status:literal, $description:literal;)+) => {
        $(
            $(#[$doc])*
            pub(super) struct $name;

            impl utoipa::IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<Response>> {
                    BTreeMap::from([($status.to_string(), RefOr::Ref(Ref::from_response_name(stringify!($name))))])
                }
            }
        )+

        /// Every shared error response: (component name, status, description).
        const ERROR_RESPONSES: &[(&str, u16, &str)] = &[$((stringify!($name), $status, $description)),+];
    };
}

error_responses! {
    /// 400: the body or a query parameter is invalid.
    BadRequest => 400, "The body or a query parameter is invalid (`invalid_request`; `field` names the culprit), or the body is not a JSON object.";
    /// 413: the body is over the limit.
    PayloadTooLarge => 413, "The body is over 1 MiB (`request_too_large`); nothing was read past the limit or written.";
    /// 401: no or unknown admin token.
    Unauthorized => 401, "No admin token, or an unknown, revoked or expired one (`unauthenticated`).";
    /// 403: the token may not do this.
    Forbidden => 403, "The token lacks the required scope (`insufficient_scope`, the message names it), or holds it but may not use it here (`forbidden`), e.g. a token bound to a team on a global resource.";
    /// 404: the resource does not exist (or is outside the token's team or project).
    NotFound => 404, "The resource does not exist, or lies outside the token's team or project (`not_found`).";
    /// 409: the write conflicts with the current state.
    Conflict => 409, "The write conflicts with an existing resource or with the resource's state (`conflict`).";
    /// 500: the control plane failed; details are logged, not returned.
    InternalError => 500, "The control plane failed (`internal_error`); details are in its log.";
}

/// The document, built once.
pub(super) fn document() -> &'static [u8] {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    DOC.get_or_init(|| {
        let (_, api) = super::api().split_for_parts();
        serde_json::to_vec(&finish(api)).unwrap_or_else(|e| {
            tracing::error!(error = %e, "the OpenAPI document does not serialize");
            b"{}".to_vec()
        })
    })
}

/// Adds what the annotations leave to one place: info, the security scheme and shared
/// error responses, and for each operation its security and required scope.
fn finish(mut api: OpenApi) -> OpenApi {
    api.info = InfoBuilder::new()
        .title("tollgate management API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Manage providers, models, teams, projects, virtual keys, budgets, routing, admin \
             tokens and read usage and the audit trail. Every operation but this document and \
             `/healthz` takes `Authorization: Bearer <admin token>`. Money is USD as decimal \
             strings (\"500.00\"); requests may also give JSON numbers, converted exactly.",
        ))
        .build();
    let components = api.components.get_or_insert_with(Default::default);
    components
        .add_security_scheme(BEARER, SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    components.schemas.insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    let mut nested = Vec::new();
    ErrorBody::schemas(&mut nested);
    components.schemas.extend(nested);
    components.schemas.extend(query_schemas());
    for (name, _, description) in ERROR_RESPONSES {
        let mut response = ResponseBuilder::new().description(*description).content(
            "application/json",
            ContentBuilder::new().schema(Some(Ref::from_schema_name(ErrorBody::name()))).build(),
        );
        if *name == "Unauthorized" {
            response = response.header(
                "WWW-Authenticate",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::String).examples(["Bearer"]))
                    .build(),
            );
        }
        components.responses.insert((*name).to_owned(), RefOr::T(response.build()));
    }
    for item in api.paths.paths.values_mut() {
        for op in
            [&mut item.get, &mut item.post, &mut item.patch, &mut item.delete, &mut item.put].into_iter().flatten()
        {
            describe_access(op);
            optional_body(op);
        }
    }
    api
}

/// A handler taking `Option<T>` reads an empty body as the defaults; it does not take a
/// JSON `null`. Say so: the body is `T`, and not required.
fn optional_body(op: &mut Operation) {
    use utoipa::openapi::schema::Schema;
    let Some(body) = op.request_body.as_mut() else { return };
    for content in body.content.values_mut() {
        if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema
            && let [RefOr::T(Schema::Object(null)), inner] = one_of.items.as_slice()
            && null.schema_type == utoipa::openapi::schema::SchemaType::Type(Type::Null)
        {
            content.schema = Some(inner.clone());
        }
    }
}

/// Bearer security on every operation that can answer 401, and its scope in words.
fn describe_access(op: &mut Operation) {
    let authenticated = op.responses.responses.contains_key("401");
    let scope = op.extensions.as_ref().and_then(|e| e.get(SCOPE_EXTENSION)).and_then(|v| v.as_str()).map(str::to_owned);
    let access = match (&scope, authenticated) {
        (Some(s), _) => {
            let global = Scope::parse(s).is_some_and(Scope::is_global);
            format!(
                "Requires an admin token with scope `{s}`{}.",
                if global { ", bound to no team or project" } else { "" }
            )
        }
        (None, true) => "Requires any valid admin token.".to_owned(),
        (None, false) => "Public: no token needed.".to_owned(),
    };
    op.description = Some(match op.description.take() {
        Some(d) if !d.is_empty() => format!("{d}\n\n{access}"),
        _ => access,
    });
    if authenticated {
        op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    } else {
        op.security = Some(vec![SecurityRequirement::default()]);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_error_code_the_api_answers_is_documented() {
        let errors = [
            ControlError::invalid("f", "r"),
            ControlError::BadBody("b".into()),
            ControlError::Unauthenticated,
            ControlError::InsufficientScope("keys:read"),
            ControlError::Forbidden("f".into()),
            ControlError::NotFound { kind: "key", id: "k".into() },
            ControlError::Conflict("c".into()),
            ControlError::Internal("i".into()),
        ];
        for e in errors {
            let (status, code) = e.http();
            assert!(ControlError::HTTP_CODES.contains(&code), "{code} is not documented");
            assert!(
                ERROR_RESPONSES.iter().any(|(_, s, _)| *s == status.as_u16()),
                "status {status} has no shared error response"
            );
        }
    }

    /// Routes reach the router only through `routes!`, which documents them: a route
    /// added with a plain `.route(...)` would be served but missing from the document.
    #[test]
    fn every_route_is_registered_through_the_documented_table() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![dir.join("lib.rs"), dir.join("metrics.rs")];
        for entry in std::fs::read_dir(dir.join("rest")).unwrap() {
            files.push(entry.unwrap().path());
        }
        // Spelled apart so this file does not match itself.
        let calls = ["route", "route_service", "nest", "nest_service"].map(|m| format!(".{m}("));
        let mut found = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                for call in calls.iter() {
                    // The one exception: `GET /metrics` (Prometheus text, not the JSON
                    // API), added around the finished router by `metrics::instrument`.
                    if code.contains(call) && !code.contains("\"/metrics\"") {
                        found.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
                    }
                }
            }
        }
        assert!(found.is_empty(), "routes added outside `routes!` are not in the OpenAPI document: {found:#?}");
    }

    #[test]
    fn the_document_is_built_once_and_is_json() {
        let a = document();
        let b = document();
        assert!(std::ptr::eq(a, b));
        let v: serde_json::Value = serde_json::from_slice(a).unwrap();
        assert!(v["openapi"].as_str().unwrap().starts_with("3.1."), "{}", v["openapi"]);
    }
}
