//! The OpenAPI document: security scheme, descriptions, tags.

use axum::http::StatusCode;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
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

/// Gives every response without a description its status' reason phrase
/// (OpenAPI requires one).
pub(crate) fn describe_responses(openapi: &mut utoipa::openapi::OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            for (status, response) in operation.responses.responses.iter_mut() {
                if let utoipa::openapi::RefOr::T(response) = response
                    && response.description.is_empty()
                {
                    response.description = status
                        .parse::<u16>()
                        .ok()
                        .and_then(|s| StatusCode::from_u16(s).ok())
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("Response")
                        .to_string();
                }
            }
        }
    }
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
