//! Content negotiation: what a request body is (JSON, YAML, protobuf of
//! built-in kinds) and what the client accepts back (JSON, or a Table).

use axum::http::{HeaderMap, header};
use serde_json::Value;

use super::error::ApiError;
use super::protobuf;

/// Whether the client asked for a meta.k8s.io Table.
pub(super) fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            accept
                .split(',')
                .next()
                .is_some_and(|first| first.contains("as=Table"))
        })
}

/// The request's media type, lowercased, without parameters.
pub(super) fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

pub(super) fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))
}

pub(super) fn parse_yaml(body: &[u8]) -> Result<Value, ApiError> {
    serde_yaml::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid YAML: {e}")))
}

/// Parses a create/update body by its content type.
pub(super) fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    match content_type(headers).as_str() {
        "application/json" | "" => parse_json(body),
        "application/yaml" => parse_yaml(body),
        ct if protobuf::is_protobuf(ct) => protobuf::decode_object(body),
        _ => Err(ApiError::UnsupportedMediaType {
            accepted: format!(
                "application/json, application/yaml, {} (built-in kinds)",
                protobuf::MEDIA_TYPE
            ),
        }),
    }
}

/// Answers are JSON only. A client that offers only binary encodings
/// (protobuf, CBOR) gets 406; kubectl and client-go offer protobuf first with
/// JSON as a fallback, and get JSON. Other offers (YAML, text) keep getting
/// JSON as before, which YAML readers parse too.
pub(super) fn check_accept(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(accept) = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .filter(|a| !a.trim().is_empty())
    else {
        return Ok(());
    };
    let binary_only = accept.split(',').all(|r| {
        let media = r
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        media.contains("protobuf") || media == "application/cbor"
    });
    if binary_only {
        Err(ApiError::NotAcceptable {
            requested: accept.to_string(),
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(name.clone(), value.parse().unwrap());
        }
        h
    }

    #[test]
    fn answers_are_json_unless_the_client_takes_only_binary() {
        let accept = |v: &str| check_accept(&headers(&[(header::ACCEPT, v)]));
        assert!(check_accept(&HeaderMap::new()).is_ok());
        // What kubectl sends: protobuf first, JSON as the fallback.
        assert!(accept("application/vnd.kubernetes.protobuf, application/json").is_ok());
        assert!(accept("application/yaml").is_ok());
        assert!(matches!(
            accept("application/vnd.kubernetes.protobuf"),
            Err(ApiError::NotAcceptable { .. })
        ));
        assert!(matches!(
            accept("application/cbor"),
            Err(ApiError::NotAcceptable { .. })
        ));
    }

    #[test]
    fn a_table_is_what_the_first_accepted_type_asks_for() {
        let table = "application/json;as=Table;v=v1;g=meta.k8s.io";
        assert!(wants_table(&headers(&[(
            header::ACCEPT,
            &format!("{table}, application/json")
        )])));
        assert!(!wants_table(&headers(&[(
            header::ACCEPT,
            &format!("application/json, {table}")
        )])));
        assert!(!wants_table(&HeaderMap::new()));
    }

    #[test]
    fn bodies_are_read_by_their_content_type() {
        let with = |ct: &str| headers(&[(header::CONTENT_TYPE, ct)]);
        assert_eq!(
            content_type(&with("Application/JSON; charset=utf-8")),
            "application/json"
        );
        assert_eq!(
            parse_body(&with("application/yaml"), b"a: 1\n").unwrap(),
            serde_json::json!({"a": 1})
        );
        assert_eq!(
            parse_body(&HeaderMap::new(), br#"{"a": 1}"#).unwrap(),
            serde_json::json!({"a": 1}),
            "no content type reads JSON"
        );
        assert!(matches!(
            parse_body(&with("text/plain"), b"a"),
            Err(ApiError::UnsupportedMediaType { .. })
        ));
        assert!(matches!(
            parse_body(&with("application/json"), b"{"),
            Err(ApiError::BadRequest(_))
        ));
    }
}
