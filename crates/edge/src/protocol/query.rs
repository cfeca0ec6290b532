//! The query protocol (IAM, STS): `Action=...&Version=...` parameters in a form body
//! or the URL, answered with `<ActionResponse><ActionResult>` XML.

use bytes::Bytes;
use http::{HeaderValue, Method, Response, header};

use super::xml::XmlWriter;
use super::{AwsError, Protocol};
use crate::service::ServiceRequest;

/// A decoded query-protocol request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRequest {
    pub action: String,
    params: Vec<(String, String)>,
}

impl QueryRequest {
    /// Reads parameters from the URL and, for a form POST, from the body.
    pub fn parse(req: &ServiceRequest) -> Result<Self, AwsError> {
        let mut params: Vec<(String, String)> =
            form_urlencoded::parse(req.parts.uri.query().unwrap_or_default().as_bytes())
                .filter(|(key, _)| !key.starts_with("X-Amz-"))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        if req.parts.method == Method::POST {
            let is_form = req
                .parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
            if !is_form && !req.body.is_empty() {
                return Err(AwsError::bad_request(
                    Protocol::Query,
                    "Query-protocol requests must be sent as application/x-www-form-urlencoded",
                ));
            }
            params.extend(
                form_urlencoded::parse(&req.body).map(|(k, v)| (k.into_owned(), v.into_owned())),
            );
        }
        let action = params
            .iter()
            .find(|(key, _)| key == "Action")
            .map(|(_, value)| value.clone())
            .ok_or_else(|| {
                AwsError::new(
                    http::StatusCode::BAD_REQUEST,
                    "MissingAction",
                    "Missing Action parameter",
                )
            })?;
        Ok(Self { action, params })
    }

    /// Every parameter, as sent.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The parameters as nested objects, by the dots in their names
    /// (`Attribute.1.Name` = x as `{"Attribute": {"1": {"Name": "x"}}}`), without
    /// `Action` and `Version`: for a service to read into its JSON shapes.
    pub fn tree(&self) -> serde_json::Value {
        use serde_json::{Map, Value};
        let mut tree = Map::new();
        for (key, value) in &self.params {
            if matches!(key.as_str(), "Action" | "Version") {
                continue;
            }
            let parts: Vec<&str> = key.split('.').collect();
            let mut node = &mut tree;
            for (i, part) in parts.iter().enumerate() {
                if i + 1 == parts.len() {
                    node.insert((*part).to_owned(), Value::String(value.clone()));
                } else {
                    let child = node
                        .entry((*part).to_owned())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if !child.is_object() {
                        *child = Value::Object(Map::new());
                    }
                    node = child.as_object_mut().expect("an object");
                }
            }
        }
        Value::Object(tree)
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// `<{action}Response><{action}Result>…</{action}Result><ResponseMetadata>…` with the
/// result's elements written by `result`.
pub fn response(
    action: &str,
    namespace: &str,
    request_id: &str,
    result: impl FnOnce(&mut XmlWriter),
) -> Response<Bytes> {
    let mut xml = XmlWriter::new();
    let response_tag = format!("{action}Response");
    let result_tag = format!("{action}Result");
    xml.open_with_namespace(&response_tag, Some(namespace));
    xml.open(&result_tag);
    result(&mut xml);
    xml.close(&result_tag);
    xml.open("ResponseMetadata");
    xml.leaf("RequestId", request_id);
    xml.close("ResponseMetadata");
    xml.close(&response_tag);
    let mut response = Response::new(Bytes::from(xml.finish()));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str, content_type: Option<&str>, body: &str) -> ServiceRequest {
        let mut builder = http::Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        let (parts, ()) = builder.body(()).unwrap().into_parts();
        ServiceRequest {
            parts,
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn reads_form_bodies_and_urls() {
        let form = request(
            "POST",
            "/",
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            "Action=GetSessionToken&Version=2011-06-15&DurationSeconds=900",
        );
        let parsed = QueryRequest::parse(&form).unwrap();
        assert_eq!(parsed.action, "GetSessionToken");
        assert_eq!(parsed.param("DurationSeconds"), Some("900"));

        let presigned = request(
            "GET",
            "/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Signature=abc",
            None,
            "",
        );
        let parsed = QueryRequest::parse(&presigned).unwrap();
        assert_eq!(parsed.action, "GetCallerIdentity");
        assert_eq!(parsed.param("X-Amz-Signature"), None);
    }

    #[test]
    fn rejects_missing_action_and_non_form_bodies() {
        let missing = request(
            "POST",
            "/",
            Some("application/x-www-form-urlencoded"),
            "Version=1",
        );
        assert_eq!(
            QueryRequest::parse(&missing).unwrap_err().code,
            "MissingAction"
        );
        let json = request("POST", "/", Some("application/json"), "{}");
        assert_eq!(QueryRequest::parse(&json).unwrap_err().status, 400);
    }

    #[test]
    fn responses_wrap_the_result() {
        let response = response("GetThing", "urn:ns", "rid", |xml| xml.leaf("Name", "x"));
        assert_eq!(
            std::str::from_utf8(response.body()).unwrap(),
            "<GetThingResponse xmlns=\"urn:ns\"><GetThingResult><Name>x</Name></GetThingResult>\
             <ResponseMetadata><RequestId>rid</RequestId></ResponseMetadata></GetThingResponse>"
        );
    }
}
