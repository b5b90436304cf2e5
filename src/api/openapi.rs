//! The OpenAPI document: security scheme, descriptions, tags.

use axum::http::StatusCode;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

pub(crate) struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Completes what the handlers' annotations leave out, the same for every
/// route: errors are problem documents (`application/problem+json`), every
/// route may answer 500, a route that takes a body or query parameters may
/// answer 400, and every response has a description (OpenAPI requires one).
pub(crate) fn complete_responses(openapi: &mut utoipa::openapi::OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let takes_input = operation.request_body.is_some()
                || operation.parameters.iter().flatten().any(|p| {
                    matches!(
                        p,
                        RefOr::T(p) if matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query)
                    )
                });
            let responses = &mut operation.responses.responses;
            if takes_input {
                responses
                    .entry("400".into())
                    .or_insert_with(|| problem_response(StatusCode::BAD_REQUEST));
            }
            responses
                .entry("500".into())
                .or_insert_with(|| problem_response(StatusCode::INTERNAL_SERVER_ERROR));
            for (status, response) in responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                if response.description.is_empty() {
                    response.description = reason(status);
                }
                if let Some(content) = response.content.shift_remove("application/json") {
                    let is_problem = matches!(
                        &content,
                        RefOr::T(c) if matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem"))
                    );
                    let media = if is_problem {
                        "application/problem+json"
                    } else {
                        "application/json"
                    };
                    response.content.insert(media.into(), content);
                }
            }
        }
    }
}

fn reason(status: &str) -> String {
    status
        .parse::<u16>()
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Response")
        .to_string()
}

/// A response whose body is a problem document.
fn problem_response(status: StatusCode) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(reason(status.as_str()))
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "materializer",
        description = "Trigger, watch and stop runs that materialize Nakadi event types into warehouse files; list topics and preview mappings."
    ),
    modifiers(&SecurityAddon),
    tags(
        (name = "runs", description = "Runs of a topic"),
        (name = "topics", description = "Topics, their configuration and mapping previews"),
        (name = "operations", description = "Health, metrics and this description")
    )
)]
pub(crate) struct ApiDoc;
