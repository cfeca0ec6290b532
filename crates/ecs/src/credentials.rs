//! Task roles: a task whose definition names `taskRoleArn` gets that role's temporary
//! credentials from the container credentials endpoint, as SDKs expect it:
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` (on nimbus's edge) with the task's secret
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
//!
//! Roles are handed to tasks only by callers allowed to pass them (`iam:PassRole`
//! with `iam:PassedToService` `ecs-tasks.amazonaws.com`), and a task's images are
//! pulled as its execution role.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, StatusCode};
use nimbus_auth::{Caller, Principal};
use nimbus_edge::Check;
use serde_json::{Value, json};

use crate::Ecs;

/// The service principal task roles and execution roles trust.
pub const ECS_TASKS: &str = "ecs-tasks.amazonaws.com";

/// A role session, as the endpoint hands it out.
#[derive(Debug, Clone)]
pub struct RoleCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// RFC 3339.
    pub expiration: String,
}

/// Task roles as IAM answers for them.
pub trait TaskRoles: Send + Sync {
    /// Why ECS tasks may not assume `role` (missing, or not trusting
    /// `ecs-tasks.amazonaws.com`).
    fn check(&self, role: &str) -> Result<(), String>;
    /// A session of `role` named `session`.
    fn credentials(&self, role: &str, session: &str) -> Result<RoleCredentials, String>;
    /// The principal ECS acts as when it acts as `role` for a task (pulling its
    /// images as its execution role); why it cannot assume the role.
    fn session(&self, role: &str, session: &str) -> Result<Caller, String>;
}

/// The task definition fields naming roles a task is given.
const ROLE_FIELDS: [&str; 2] = ["taskRoleArn", "executionRoleArn"];

/// The roles an ECS call hands to tasks: those of the task definition it registers
/// (RegisterTaskDefinition) or starts tasks from (RunTask, StartTask, CreateService,
/// UpdateService). A task definition that cannot be found hands over nothing; the
/// call itself then reports it.
pub fn passed_roles(ecs: &Ecs, call: &str, input: &Value) -> Vec<String> {
    let definition = match call {
        "RegisterTaskDefinition" => input.clone(),
        "RunTask" | "StartTask" | "CreateService" | "UpdateService" => {
            match input["taskDefinition"].as_str() {
                Some(reference) => ecs
                    .find_taskdef(reference)
                    .map(|(_, _, _, stored)| stored["definition"].clone())
                    .unwrap_or_default(),
                None => return Vec::new(),
            }
        }
        _ => return Vec::new(),
    };
    ROLE_FIELDS
        .iter()
        .filter_map(|field| definition[field].as_str().map(str::to_owned))
        .collect()
}

/// What a caller handing `role` to tasks must be allowed, as AWS requires.
pub fn pass_role(role: &str) -> Check {
    Check::dependent("iam:PassRole", role)
        .with_context("iam:PassedToService", vec![ECS_TASKS.to_owned()])
}

/// Whom a task's images are pulled as: its execution role's session. A task without
/// one is pulled for by this node itself (`None`), as an EC2 container instance
/// pulls with its instance role, which may read the account's repositories.
pub fn image_puller(
    roles: Option<&dyn TaskRoles>,
    task: &str,
    definition: &Value,
) -> Result<Option<Principal>, String> {
    let Some(role) = definition["executionRoleArn"].as_str() else {
        return Ok(None);
    };
    let roles = roles.ok_or("this server gives tasks no roles")?;
    roles
        .session(role, task)
        .map(|caller| Some(caller.principal))
        .map_err(|reason| format!("unable to assume the task execution role: {reason}"))
}

/// The tasks that may fetch credentials: by task id, the token they were given and
/// their role.
#[derive(Default)]
pub struct Grants {
    by_task: Mutex<HashMap<String, (String, String)>>,
}

impl Grants {
    /// A new secret token for `task`, which may then fetch `role`'s credentials.
    pub fn grant(&self, task: &str, role: &str) -> String {
        let mut bytes = [0u8; 24];
        let _ = getrandom::fill(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.restore(task, role, &token);
        token
    }

    /// Honours again the token a re-adopted task's containers hold.
    pub fn restore(&self, task: &str, role: &str, token: &str) {
        self.by_task
            .lock()
            .expect("credential grants")
            .insert(task.to_owned(), (token.to_owned(), role.to_owned()));
    }

    pub fn revoke(&self, task: &str) {
        self.by_task.lock().expect("credential grants").remove(task);
    }

    fn role_for(&self, task: &str, token: &str) -> Option<String> {
        use subtle::ConstantTimeEq;
        let grants = self.by_task.lock().expect("credential grants");
        let (expected, role) = grants.get(task)?;
        bool::from(expected.as_bytes().ct_eq(token.as_bytes())).then(|| role.clone())
    }
}

struct Endpoint {
    grants: Arc<Grants>,
    roles: Arc<dyn TaskRoles>,
}

/// `GET /_nimbus/ecs/credentials/<task id>` with the task's token.
pub fn routes(grants: Arc<Grants>, roles: Arc<dyn TaskRoles>) -> Router {
    Router::new()
        .route("/_nimbus/ecs/credentials/{task}", get(serve))
        .with_state(Arc::new(Endpoint { grants, roles }))
}

async fn serve(
    State(endpoint): State<Arc<Endpoint>>,
    Path(task): Path<String>,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(role) = endpoint.grants.role_for(&task, token) else {
        return (
            StatusCode::FORBIDDEN,
            "no credentials for this task and token",
        )
            .into_response();
    };
    let roles = endpoint.roles.clone();
    let session = task.clone();
    let issued =
        tokio::task::spawn_blocking(move || roles.credentials(&role, &session).map(|c| (c, role)))
            .await;
    match issued {
        Ok(Ok((credentials, role))) => {
            let body = json!({
                "AccessKeyId": credentials.access_key_id,
                "SecretAccessKey": credentials.secret_access_key,
                "Token": credentials.session_token,
                "Expiration": credentials.expiration,
                "RoleArn": role,
            });
            (
                [(http::header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
        Ok(Err(reason)) => (StatusCode::FORBIDDEN, reason).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
