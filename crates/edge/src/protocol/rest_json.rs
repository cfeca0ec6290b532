//! The rest-json protocol (Lambda, Scheduler): operations chosen by method and path
//! template, JSON bodies, some inputs in the path, query string and headers.

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use percent_encoding::percent_decode_str;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{AwsError, Protocol};
use crate::authorization::Authorization;
use crate::service::ServiceRequest;

/// A route: method, path template (`/2015-03-31/functions/{FunctionName}`), the
/// service's operation, and what IAM must allow for it.
pub type Route<Op> = (Method, &'static str, Op, Authorization);

/// The operations of one path template, by method.
type Methods<Op> = Vec<(Method, Op, Authorization)>;

/// A service's operations by method and path template.
pub struct RestRoutes<Op: Copy> {
    router: matchit::Router<Methods<Op>>,
    docs: Vec<crate::service::OperationDoc>,
}

/// The decoded `{Name}` segments of a matched path.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PathParams(Vec<(String, String)>);

impl PathParams {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl<Op: Copy + std::fmt::Debug> RestRoutes<Op> {
    /// The routes, each operation named by its variant's name.
    pub fn new(routes: &[Route<Op>]) -> Self {
        let docs = routes
            .iter()
            .map(
                |(method, template, op, authorization)| crate::service::OperationDoc {
                    name: format!("{op:?}"),
                    route: Some(format!("{method} {template}")),
                    authorization: *authorization,
                },
            )
            .collect();
        let mut by_path: Vec<(&'static str, Methods<Op>)> = Vec::new();
        for (method, template, op, authorization) in routes {
            let entry = (method.clone(), *op, *authorization);
            match by_path.iter_mut().find(|(path, _)| path == template) {
                Some((_, methods)) => methods.push(entry),
                None => by_path.push((template, vec![entry])),
            }
        }
        let mut router = matchit::Router::new();
        for (template, methods) in by_path {
            router
                .insert(template, methods)
                .expect("route templates are valid and distinct");
        }
        Self { router, docs }
    }

    /// Every route, for the docs.
    pub fn operations(&self) -> Vec<crate::service::OperationDoc> {
        self.docs.clone()
    }

    /// The operation for a request and its declared authorization, or
    /// `UnknownOperationException`.
    pub fn find(
        &self,
        method: &Method,
        path: &str,
    ) -> Result<(Op, Authorization, PathParams), AwsError> {
        let unknown =
            || AwsError::unknown_operation(Protocol::RestJson, &format!("{method} {path}"));
        // A collection asked for with a trailing slash (`/functions/`, as some SDKs
        // send it) is the collection.
        let matched = self
            .router
            .at(path)
            .or_else(|err| match path.strip_suffix('/') {
                Some(trimmed) if !trimmed.is_empty() => self.router.at(trimmed),
                _ => Err(err),
            })
            .map_err(|_| unknown())?;
        let (op, authorization) = matched
            .value
            .iter()
            .find(|(m, _, _)| m == method)
            .map(|(_, op, authorization)| (*op, *authorization))
            .ok_or_else(unknown)?;
        let params = matched
            .params
            .iter()
            .map(|(key, value)| {
                (
                    key.to_owned(),
                    percent_decode_str(value).decode_utf8_lossy().into_owned(),
                )
            })
            .collect();
        Ok((op, authorization, PathParams(params)))
    }
}

/// The request's query parameters, decoded.
pub fn query_params(req: &ServiceRequest) -> Vec<(String, String)> {
    form_urlencoded::parse(req.parts.uri.query().unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Parses a JSON body; an empty body reads as `{}`. The error text names the problem
/// for the service to wrap in its own error code.
pub fn json_body<T: DeserializeOwned>(req: &ServiceRequest) -> Result<T, String> {
    let body: &[u8] = if req.body.is_empty() {
        b"{}"
    } else {
        &req.body
    };
    serde_json::from_slice(body)
        .map_err(|err| format!("Could not parse request body into json: {err}"))
}

pub fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Bytes> {
    let body = serde_json::to_vec(value).expect("response shapes serialize");
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub fn empty_response(status: StatusCode) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Op {
        Get,
        Delete,
        List,
        Invoke,
    }

    #[test]
    fn routes_by_method_and_template_and_decodes_params() {
        let any = Authorization::new("lambda:Any", "*");
        let get = Authorization::new("lambda:GetFunction", "*");
        let routes = RestRoutes::new(&[
            (Method::GET, "/2015-03-31/functions", Op::List, any),
            (
                Method::GET,
                "/2015-03-31/functions/{FunctionName}",
                Op::Get,
                get,
            ),
            (
                Method::DELETE,
                "/2015-03-31/functions/{FunctionName}",
                Op::Delete,
                any,
            ),
            (
                Method::POST,
                "/2015-03-31/functions/{FunctionName}/invocations",
                Op::Invoke,
                any,
            ),
        ]);
        let (op, authorization, params) = routes
            .find(&Method::GET, "/2015-03-31/functions/my-fn")
            .unwrap();
        assert_eq!(op, Op::Get);
        assert_eq!(authorization, get);
        assert_eq!(params.get("FunctionName"), Some("my-fn"));
        let (op, _, params) = routes
            .find(&Method::POST, "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Af/invocations")
            .unwrap();
        assert_eq!(op, Op::Invoke);
        assert_eq!(
            params.get("FunctionName"),
            Some("arn:aws:lambda:us-east-1:000000000000:function:f")
        );
        assert_eq!(
            routes
                .find(&Method::DELETE, "/2015-03-31/functions/x")
                .unwrap()
                .0,
            Op::Delete
        );
        for collection in ["/2015-03-31/functions", "/2015-03-31/functions/"] {
            assert_eq!(routes.find(&Method::GET, collection).unwrap().0, Op::List);
        }
        let err = routes
            .find(&Method::PUT, "/2015-03-31/functions/x")
            .unwrap_err();
        assert_eq!(err.code, "UnknownOperationException");
        assert!(routes.find(&Method::GET, "/nope").is_err());
    }
}
