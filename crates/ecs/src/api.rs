//! ECS's json-1.1 API: each call declared as `ecs:<Action>` on its cluster, task
//! definition, task, service or container instance, and carried out on a blocking
//! thread against the metadata store.

use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use nimbus_edge::protocol::json11;
use nimbus_edge::{
    Authorization, AwsError, Check, NamedOperation, Operation, OperationDoc, Protocol,
    RequestContext, Service, ServiceDescriptor, ServiceRequest, catalog, named,
};
use serde_json::Value;

use crate::credentials::{pass_role, passed_roles};
use crate::error::{internal, invalid};
use crate::{DEFAULT_CLUSTER, Ecs};

/// The ARNs the operations act on, as AWS's authorization reference writes them.
const CLUSTER: &str = "arn:${Partition}:ecs:${Region}:${Account}:cluster/${ClusterName}";
const TASK_DEFINITION: &str = "arn:${Partition}:ecs:${Region}:${Account}:task-definition/${TaskDefinitionFamilyName}:${TaskDefinitionRevisionNumber}";
const TASK: &str = "arn:${Partition}:ecs:${Region}:${Account}:task/${ClusterName}/${TaskId}";
const SERVICE: &str =
    "arn:${Partition}:ecs:${Region}:${Account}:service/${ClusterName}/${ServiceName}";
const CONTAINER_INSTANCE: &str = "arn:${Partition}:ecs:${Region}:${Account}:container-instance/${ClusterName}/${ContainerInstanceId}";
/// Any of the above, named by the request's `resourceArn`.
const TAGGABLE: &str = "arn:${Partition}:ecs:${Region}:${Account}:${ResourceType}/${ResourcePath}";
const ANY: &str = "*";

/// The cluster an operation acts in, as its ARN.
const IN_CLUSTER: &[&str] = &["ecs:cluster"];
const START_KEYS: &[&str] = &["ecs:cluster", "ecs:container-instances"];
const SERVICE_KEYS: &[&str] = &["ecs:cluster", "ecs:task-definition"];
/// A task definition's task and execution roles are handed to its tasks.
const PASSES_ROLES: &[&str] = &["iam:PassRole"];

const fn ecs(action: &'static str, resource: &'static str) -> Authorization {
    Authorization::new(action, resource)
}

const OPERATIONS: &[NamedOperation] = &[
    named("CreateCluster", ecs("ecs:CreateCluster", CLUSTER)),
    named("DescribeClusters", ecs("ecs:DescribeClusters", CLUSTER)),
    named("ListClusters", ecs("ecs:ListClusters", ANY)),
    named("DeleteCluster", ecs("ecs:DeleteCluster", CLUSTER)),
    named(
        "RegisterTaskDefinition",
        ecs("ecs:RegisterTaskDefinition", ANY).dependent(PASSES_ROLES),
    ),
    named(
        "DescribeTaskDefinition",
        ecs("ecs:DescribeTaskDefinition", TASK_DEFINITION),
    ),
    named(
        "DeregisterTaskDefinition",
        ecs("ecs:DeregisterTaskDefinition", TASK_DEFINITION),
    ),
    named("ListTaskDefinitions", ecs("ecs:ListTaskDefinitions", ANY)),
    named(
        "ListTaskDefinitionFamilies",
        ecs("ecs:ListTaskDefinitionFamilies", ANY),
    ),
    named(
        "RunTask",
        ecs("ecs:RunTask", TASK_DEFINITION)
            .keys(IN_CLUSTER)
            .dependent(PASSES_ROLES),
    ),
    named(
        "StartTask",
        ecs("ecs:StartTask", TASK_DEFINITION)
            .keys(START_KEYS)
            .dependent(PASSES_ROLES),
    ),
    named("StopTask", ecs("ecs:StopTask", TASK).keys(IN_CLUSTER)),
    named(
        "DescribeTasks",
        ecs("ecs:DescribeTasks", TASK).keys(IN_CLUSTER),
    ),
    named("ListTasks", ecs("ecs:ListTasks", ANY).keys(IN_CLUSTER)),
    named(
        "CreateService",
        ecs("ecs:CreateService", SERVICE)
            .keys(SERVICE_KEYS)
            .dependent(PASSES_ROLES),
    ),
    named(
        "UpdateService",
        ecs("ecs:UpdateService", SERVICE)
            .keys(SERVICE_KEYS)
            .dependent(PASSES_ROLES),
    ),
    named(
        "DescribeServices",
        ecs("ecs:DescribeServices", SERVICE).keys(IN_CLUSTER),
    ),
    named(
        "ListServices",
        ecs("ecs:ListServices", ANY).keys(IN_CLUSTER),
    ),
    named(
        "DeleteService",
        ecs("ecs:DeleteService", SERVICE).keys(IN_CLUSTER),
    ),
    named(
        "ListContainerInstances",
        ecs("ecs:ListContainerInstances", CLUSTER),
    ),
    named(
        "DescribeContainerInstances",
        ecs("ecs:DescribeContainerInstances", CONTAINER_INSTANCE).keys(IN_CLUSTER),
    ),
    named(
        "DeregisterContainerInstance",
        ecs("ecs:DeregisterContainerInstance", CLUSTER),
    ),
    named(
        "UpdateContainerInstancesState",
        ecs("ecs:UpdateContainerInstancesState", CONTAINER_INSTANCE).keys(IN_CLUSTER),
    ),
    named("TagResource", ecs("ecs:TagResource", TAGGABLE)),
    named("UntagResource", ecs("ecs:UntagResource", TAGGABLE)),
    named(
        "ListTagsForResource",
        ecs("ecs:ListTagsForResource", TAGGABLE),
    ),
];

#[derive(Debug)]
pub struct EcsCall {
    name: &'static str,
    authorization: Authorization,
    input: Value,
}

impl Operation for EcsCall {
    fn name(&self) -> &'static str {
        self.name
    }

    fn authorization(&self) -> Authorization {
        self.authorization
    }
}

/// The resources a call names, as its declaration's template asks, each with the
/// cluster it is in as `ecs:cluster` (and the other keys the declaration lists).
fn checks(ecs: &Ecs, call: &EcsCall) -> Result<Vec<Check>, AwsError> {
    let input = &call.input;
    let declared = call.authorization;
    let cluster = ecs.cluster_name(input["cluster"].as_str());
    let cluster_arn = ecs.arn(&format!("cluster/{cluster}"));
    let list = |field: &str| -> Vec<&str> {
        match &input[field] {
            Value::String(one) => vec![one.as_str()],
            many => many
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect(),
        }
    };
    let required = |field: &str| {
        input[field]
            .as_str()
            .ok_or_else(|| invalid(format!("{field} is required")))
    };
    // The last segment of a name given as a name or an ARN.
    let last = |name: &str| name.rsplit('/').next().unwrap_or(name).to_owned();
    let resources: Vec<String> = match declared.resource {
        ANY => vec![ANY.to_owned()],
        CLUSTER => {
            let names = match call.name {
                "CreateCluster" => vec![input["clusterName"].as_str().unwrap_or(DEFAULT_CLUSTER)],
                "DescribeClusters" if input["clusters"].is_null() => vec![DEFAULT_CLUSTER],
                "DescribeClusters" => list("clusters"),
                _ => vec![cluster],
            };
            names
                .into_iter()
                .map(|name| ecs.arn(&format!("cluster/{}", ecs.cluster_name(Some(name)))))
                .collect()
        }
        TASK_DEFINITION => vec![ecs.taskdef_arn(required("taskDefinition")?)?],
        TASK => list(if call.name == "StopTask" {
            "task"
        } else {
            "tasks"
        })
        .into_iter()
        .map(|task| {
            let (cluster, id) = ecs.task_ref(input["cluster"].as_str(), task);
            ecs.arn(&format!("task/{cluster}/{id}"))
        })
        .collect(),
        SERVICE => list(match call.name {
            "CreateService" => "serviceName",
            "DescribeServices" => "services",
            _ => "service",
        })
        .into_iter()
        .map(|service| ecs.arn(&format!("service/{cluster}/{}", last(service))))
        .collect(),
        CONTAINER_INSTANCE => list("containerInstances")
            .into_iter()
            .map(|instance| ecs.arn(&format!("container-instance/{cluster}/{}", last(instance))))
            .collect(),
        _ => vec![required("resourceArn")?.to_owned()],
    };
    if resources.is_empty() {
        return Err(invalid(format!("{} names no resource", call.name)));
    }
    let mut context = Vec::new();
    for key in declared.condition_keys {
        let values = match *key {
            "ecs:cluster" => vec![cluster_arn.clone()],
            "ecs:container-instances" => list("containerInstances")
                .into_iter()
                .map(|instance| {
                    ecs.arn(&format!("container-instance/{cluster}/{}", last(instance)))
                })
                .collect(),
            _ => match input["taskDefinition"].as_str() {
                Some(taskdef) => vec![ecs.taskdef_arn(taskdef)?],
                None => continue,
            },
        };
        context.push(((*key).to_owned(), values));
    }
    let passed = passed_roles(ecs, call.name, input);
    Ok(resources
        .into_iter()
        .map(|resource| Check {
            context: context.clone(),
            ..Check::on(resource)
        })
        .chain(passed.iter().map(|role| pass_role(role)))
        .collect())
}

pub struct EcsApi {
    ecs: Arc<Ecs>,
}

impl EcsApi {
    pub fn new(ecs: Arc<Ecs>) -> Self {
        Self { ecs }
    }
}

impl Service for EcsApi {
    type Operation = EcsCall;

    fn descriptor(&self) -> &'static ServiceDescriptor {
        &catalog::ECS
    }

    fn operations(&self) -> Vec<OperationDoc> {
        OperationDoc::named(OPERATIONS)
    }

    fn parse(&self, req: &ServiceRequest) -> Result<EcsCall, AwsError> {
        let (entry, input) = json11::call(req, OPERATIONS)?;
        Ok(EcsCall {
            name: entry.name,
            authorization: entry.authorization,
            input,
        })
    }

    async fn access(&self, _ctx: &RequestContext, call: &EcsCall) -> Result<Vec<Check>, AwsError> {
        // A task definition named by its family alone is looked up in the store,
        // which waits for the disk; the server's runtime is multi-threaded.
        tokio::task::block_in_place(|| checks(&self.ecs, call))
    }

    async fn handle(
        &self,
        _ctx: &RequestContext,
        call: EcsCall,
    ) -> Result<Response<Bytes>, AwsError> {
        let ecs = self.ecs.clone();
        let output = tokio::task::spawn_blocking(move || {
            let input = &call.input;
            match call.name {
                "CreateCluster" => ecs.create_cluster(input),
                "DescribeClusters" => ecs.describe_clusters(input),
                "ListClusters" => ecs.list_clusters(),
                "DeleteCluster" => ecs.delete_cluster(input),
                "RegisterTaskDefinition" => ecs.register_task_definition(input),
                "DescribeTaskDefinition" => ecs.describe_task_definition(input),
                "DeregisterTaskDefinition" => ecs.deregister_task_definition(input),
                "ListTaskDefinitions" => ecs.list_task_definitions(input, false),
                "ListTaskDefinitionFamilies" => ecs.list_task_definitions(input, true),
                "RunTask" => ecs.run_task(input),
                "StartTask" => ecs.start_task(input),
                "StopTask" => ecs.stop_task(input),
                "DescribeTasks" => ecs.describe_tasks(input),
                "ListTasks" => ecs.list_tasks(input),
                "CreateService" => ecs.create_service(input),
                "UpdateService" => ecs.update_service(input),
                "DescribeServices" => ecs.describe_services(input),
                "ListServices" => ecs.list_services(input),
                "DeleteService" => ecs.delete_service(input),
                "ListContainerInstances" => ecs.list_container_instances(input),
                "DescribeContainerInstances" => ecs.describe_container_instances(input),
                "UpdateContainerInstancesState" => ecs.update_container_instances_state(input),
                "DeregisterContainerInstance" => ecs.deregister_container_instance(input),
                "TagResource" => ecs.tag_resource(input),
                "UntagResource" => ecs.untag_resource(input),
                "ListTagsForResource" => ecs.list_tags_for_resource(input),
                other => Err(AwsError::unknown_operation(Protocol::Json11, other)),
            }
        })
        .await
        .map_err(internal)??;
        Ok(json11::response(&output))
    }
}
