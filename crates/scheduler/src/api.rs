//! Scheduler's rest-json API: each request becomes a typed operation, carried out on
//! a blocking thread against the metadata store.

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use nimbus_edge::protocol::rest_json::{self, PathParams, RestRoutes};
use nimbus_edge::{
    Authorization, AwsError, Check, OperationDoc, RequestContext, Routed, Service,
    ServiceDescriptor, ServiceRequest, catalog,
};
use serde_json::Value;

use crate::Scheduler;
use crate::error::{internal, validation};
use crate::model::{CreateGroupInput, DEFAULT_GROUP, ScheduleSpec, Tag, TagInput};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    CreateSchedule,
    GetSchedule,
    UpdateSchedule,
    DeleteSchedule,
    ListSchedules,
    CreateScheduleGroup,
    GetScheduleGroup,
    DeleteScheduleGroup,
    ListScheduleGroups,
    ListTagsForResource,
    TagResource,
    UntagResource,
}

/// The ARNs the operations act on, as AWS's authorization reference writes them.
const SCHEDULE: &str =
    "arn:${Partition}:scheduler:${Region}:${Account}:schedule/${GroupName}/${ScheduleName}";
const GROUP: &str = "arn:${Partition}:scheduler:${Region}:${Account}:schedule-group/${GroupName}";

const fn scheduler(action: &'static str, resource: &'static str) -> Authorization {
    Authorization::new(action, resource)
}

/// A schedule's target runs as the role it names, which the caller hands over.
const PASSES_ROLE: &[&str] = &["iam:PassRole"];

static ROUTES: LazyLock<RestRoutes<Route>> = LazyLock::new(|| {
    use Route::*;
    RestRoutes::new(&[
        (
            Method::POST,
            "/schedules/{Name}",
            CreateSchedule,
            scheduler("scheduler:CreateSchedule", SCHEDULE).dependent(PASSES_ROLE),
        ),
        (
            Method::GET,
            "/schedules/{Name}",
            GetSchedule,
            scheduler("scheduler:GetSchedule", SCHEDULE),
        ),
        (
            Method::PUT,
            "/schedules/{Name}",
            UpdateSchedule,
            scheduler("scheduler:UpdateSchedule", SCHEDULE).dependent(PASSES_ROLE),
        ),
        (
            Method::DELETE,
            "/schedules/{Name}",
            DeleteSchedule,
            scheduler("scheduler:DeleteSchedule", SCHEDULE),
        ),
        (
            Method::GET,
            "/schedules",
            ListSchedules,
            scheduler("scheduler:ListSchedules", "*"),
        ),
        (
            Method::POST,
            "/schedule-groups/{Name}",
            CreateScheduleGroup,
            scheduler("scheduler:CreateScheduleGroup", GROUP),
        ),
        (
            Method::GET,
            "/schedule-groups/{Name}",
            GetScheduleGroup,
            scheduler("scheduler:GetScheduleGroup", GROUP),
        ),
        (
            Method::DELETE,
            "/schedule-groups/{Name}",
            DeleteScheduleGroup,
            scheduler("scheduler:DeleteScheduleGroup", GROUP),
        ),
        (
            Method::GET,
            "/schedule-groups",
            ListScheduleGroups,
            scheduler("scheduler:ListScheduleGroups", "*"),
        ),
        (
            Method::GET,
            "/tags/{ResourceArn}",
            ListTagsForResource,
            scheduler("scheduler:ListTagsForResource", GROUP),
        ),
        (
            Method::POST,
            "/tags/{ResourceArn}",
            TagResource,
            scheduler("scheduler:TagResource", GROUP),
        ),
        (
            Method::DELETE,
            "/tags/{ResourceArn}",
            UntagResource,
            scheduler("scheduler:UntagResource", GROUP),
        ),
    ])
});

#[derive(Debug)]
pub struct Listing {
    group: Option<String>,
    prefix: Option<String>,
    state: Option<String>,
    max: usize,
    next_token: Option<String>,
}

#[derive(Debug)]
pub enum SchedulerOperation {
    CreateSchedule(String, Box<ScheduleSpec>),
    UpdateSchedule(String, Box<ScheduleSpec>),
    GetSchedule(String, Option<String>),
    DeleteSchedule(String, Option<String>),
    ListSchedules(Listing),
    CreateScheduleGroup(String, Vec<Tag>),
    GetScheduleGroup(String),
    DeleteScheduleGroup(String),
    ListScheduleGroups(Listing),
    ListTagsForResource(String),
    TagResource(String, Vec<Tag>),
    UntagResource(String, Vec<String>),
}

impl SchedulerOperation {
    fn name(&self) -> &'static str {
        use SchedulerOperation::*;
        match self {
            CreateSchedule(..) => "CreateSchedule",
            UpdateSchedule(..) => "UpdateSchedule",
            GetSchedule(..) => "GetSchedule",
            DeleteSchedule(..) => "DeleteSchedule",
            ListSchedules(..) => "ListSchedules",
            CreateScheduleGroup(..) => "CreateScheduleGroup",
            GetScheduleGroup(..) => "GetScheduleGroup",
            DeleteScheduleGroup(..) => "DeleteScheduleGroup",
            ListScheduleGroups(..) => "ListScheduleGroups",
            ListTagsForResource(..) => "ListTagsForResource",
            TagResource(..) => "TagResource",
            UntagResource(..) => "UntagResource",
        }
    }
}

pub struct SchedulerApi {
    scheduler: Arc<Scheduler>,
}

impl SchedulerApi {
    pub fn new(scheduler: Arc<Scheduler>) -> Self {
        Self { scheduler }
    }
}

fn listing(query: &[(String, String)], group_param: &str) -> Result<Listing, AwsError> {
    let get = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let max = match get("MaxResults") {
        None => 100,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|max| (1..=100).contains(max))
            .ok_or_else(|| {
                validation(format!("MaxResults must be between 1 and 100, not {text}"))
            })?,
    };
    Ok(Listing {
        group: get(group_param),
        prefix: get("NamePrefix"),
        state: get("State"),
        max,
        next_token: get("NextToken"),
    })
}

/// The schedule or group an operation acts on, and the role a schedule's target
/// runs as (handed over with `iam:PassRole`).
fn access(ctx: &RequestContext, operation: &SchedulerOperation) -> Vec<Check> {
    use SchedulerOperation as Op;
    let schedule = |name: &str, group: Option<&str>| {
        ctx.arn(
            "scheduler",
            &format!("schedule/{}/{name}", group.unwrap_or(DEFAULT_GROUP)),
        )
    };
    let resource = match operation {
        Op::CreateSchedule(name, spec) | Op::UpdateSchedule(name, spec) => {
            schedule(name, spec.group_name.as_deref())
        }
        Op::GetSchedule(name, group) | Op::DeleteSchedule(name, group) => {
            schedule(name, group.as_deref())
        }
        Op::CreateScheduleGroup(name, _)
        | Op::GetScheduleGroup(name)
        | Op::DeleteScheduleGroup(name) => ctx.arn("scheduler", &format!("schedule-group/{name}")),
        Op::ListTagsForResource(arn) | Op::TagResource(arn, _) | Op::UntagResource(arn, _) => {
            arn.clone()
        }
        Op::ListSchedules(_) | Op::ListScheduleGroups(_) => "*".to_owned(),
    };
    let mut checks = vec![Check::on(resource)];
    if let Op::CreateSchedule(_, spec) | Op::UpdateSchedule(_, spec) = operation {
        checks.push(
            Check::dependent("iam:PassRole", spec.target.role_arn.clone()).with_context(
                "iam:PassedToService",
                vec!["scheduler.amazonaws.com".to_owned()],
            ),
        );
    }
    checks
}

impl Service for SchedulerApi {
    type Operation = Routed<SchedulerOperation>;

    fn descriptor(&self) -> &'static ServiceDescriptor {
        &catalog::SCHEDULER
    }

    fn operations(&self) -> Vec<OperationDoc> {
        ROUTES.operations()
    }

    fn parse(&self, req: &ServiceRequest) -> Result<Routed<SchedulerOperation>, AwsError> {
        let (route, authorization, params) =
            ROUTES.find(&req.parts.method, req.parts.uri.path())?;
        let operation = parse(req, route, &params)?;
        Ok(Routed {
            name: operation.name(),
            operation,
            authorization,
        })
    }

    async fn access(
        &self,
        ctx: &RequestContext,
        operation: &Routed<SchedulerOperation>,
    ) -> Result<Vec<Check>, AwsError> {
        Ok(access(ctx, &operation.operation))
    }

    async fn handle(
        &self,
        _ctx: &RequestContext,
        operation: Routed<SchedulerOperation>,
    ) -> Result<Response<Bytes>, AwsError> {
        let operation = operation.operation;
        use SchedulerOperation as Op;
        let scheduler = self.scheduler.clone();
        let out: Value = tokio::task::spawn_blocking(move || {
            let s = &scheduler;
            let empty = |result: Result<(), AwsError>| result.map(|()| serde_json::json!({}));
            match operation {
                Op::CreateSchedule(name, spec) => s.create_schedule(&name, *spec),
                Op::UpdateSchedule(name, spec) => s.update_schedule(&name, *spec),
                Op::GetSchedule(name, group) => s.get_schedule(&name, group.as_deref()),
                Op::DeleteSchedule(name, group) => {
                    empty(s.delete_schedule(&name, group.as_deref()))
                }
                Op::ListSchedules(l) => s.list_schedules(
                    l.group.as_deref(),
                    l.prefix.as_deref(),
                    l.state.as_deref(),
                    l.max,
                    l.next_token.as_deref(),
                ),
                Op::CreateScheduleGroup(name, tags) => s.create_group(&name, tags),
                Op::GetScheduleGroup(name) => s.get_group(&name),
                Op::DeleteScheduleGroup(name) => empty(s.delete_group(&name)),
                Op::ListScheduleGroups(l) => {
                    s.list_groups(l.prefix.as_deref(), l.max, l.next_token.as_deref())
                }
                Op::ListTagsForResource(arn) => s.list_tags(&arn),
                Op::TagResource(arn, tags) => empty(s.retag(&arn, tags, &[])),
                Op::UntagResource(arn, keys) => empty(s.retag(&arn, Vec::new(), &keys)),
            }
        })
        .await
        .map_err(internal)??;
        Ok(rest_json::json_response(StatusCode::OK, &out))
    }
}

fn parse(
    req: &ServiceRequest,
    route: Route,
    params: &PathParams,
) -> Result<SchedulerOperation, AwsError> {
    use SchedulerOperation as Op;
    let query = rest_json::query_params(req);
    let param = |name: &str| params.get(name).unwrap_or_default().to_owned();
    let group = || {
        query
            .iter()
            .find(|(key, _)| key == "groupName")
            .map(|(_, value)| value.clone())
    };
    let body = || rest_json::json_body::<ScheduleSpec>(req).map_err(validation);
    Ok(match route {
        Route::CreateSchedule => Op::CreateSchedule(param("Name"), Box::new(body()?)),
        Route::UpdateSchedule => Op::UpdateSchedule(param("Name"), Box::new(body()?)),
        Route::GetSchedule => Op::GetSchedule(param("Name"), group()),
        Route::DeleteSchedule => Op::DeleteSchedule(param("Name"), group()),
        Route::ListSchedules => Op::ListSchedules(listing(&query, "ScheduleGroup")?),
        Route::CreateScheduleGroup => {
            let input: CreateGroupInput = rest_json::json_body(req).map_err(validation)?;
            Op::CreateScheduleGroup(param("Name"), input.tags)
        }
        Route::GetScheduleGroup => Op::GetScheduleGroup(param("Name")),
        Route::DeleteScheduleGroup => Op::DeleteScheduleGroup(param("Name")),
        Route::ListScheduleGroups => Op::ListScheduleGroups(listing(&query, "")?),
        Route::ListTagsForResource => Op::ListTagsForResource(param("ResourceArn")),
        Route::TagResource => {
            let input: TagInput = rest_json::json_body(req).map_err(validation)?;
            Op::TagResource(param("ResourceArn"), input.tags)
        }
        Route::UntagResource => {
            let keys: Vec<String> = query
                .iter()
                .filter(|(key, _)| key == "TagKeys")
                .map(|(_, value)| value.clone())
                .collect();
            if keys.is_empty() {
                return Err(validation("TagKeys is required"));
            }
            Op::UntagResource(param("ResourceArn"), keys)
        }
    })
}
